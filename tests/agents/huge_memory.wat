;; huge_memory: asks for 200 initial pages (13 MB), over the 10 MB limit.
(module
  (memory (export "memory") 200)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32) (i32.const 0))
)
