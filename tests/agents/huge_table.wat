;; huge_table: asks for an initial table of 20,000 elements.
(module
  (memory (export "memory") 1)
  (table 20000 funcref)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32) (i32.const 0))
)
