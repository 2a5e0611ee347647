;; big_sink: takes envelopes up to the 1 MiB content limit and does nothing
;; with them (the count of messages handled is what a test reads).
(module
  (memory (export "memory") 20)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32) (i32.const 0))
)
