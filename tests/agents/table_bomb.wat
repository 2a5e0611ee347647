;; table_bomb: grows its table 1000 elements at a time until growth fails.
;; Returns 0 when it stopped at or below 10,000 elements, else the size.
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (block $full
      (loop $grow
        (br_if $full (i32.eq (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1)))
        (br $grow)))
    (if (result i32) (i32.le_u (table.size $t) (i32.const 10000))
      (then (i32.const 0))
      (else (table.size $t))))
)
