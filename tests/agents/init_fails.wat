;; init_fails: caxton_init returns 3, so the deploy must fail.
(module
  (memory (export "memory") 1)
  (func (export "caxton_init") (result i32) (i32.const 3))
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32) (i32.const 0))
)
