;; data_too_big: a data segment placed past what the agent memory limit
;; allows (memory may grow to 200 pages, 13 MB, but starts at 1 page).
(module
  (memory (export "memory") 1 200)
  (data (i32.const 11000000) "past the end")
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32) (i32.const 0))
)
