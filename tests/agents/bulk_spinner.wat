;; bulk_spinner: on each message, loops forever on memory.fill and
;; memory.copy of 8 MB. Each operator is one instruction, so plain operator
;; metering charged it one point: the loop never ran out of fuel.
(module
  (memory (export "memory") 150)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (loop $forever
      (memory.fill (i32.const 0) (i32.const 7) (i32.const 8000000))
      (memory.copy (i32.const 1000000) (i32.const 0) (i32.const 8000000))
      (br $forever))
    (i32.const 0))
)
