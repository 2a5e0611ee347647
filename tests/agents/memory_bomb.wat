;; memory_bomb: grows its memory 16 pages at a time until growth fails.
;; Returns 0 when the memory stopped at or below the 10 MB agent limit,
;; else the number of pages it reached.
(module
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (block $full
      (loop $grow
        (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
        ;; touch the new pages so they are really resident
        (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4)) (i32.const 1))
        (br $grow)))
    (if (result i32) (i32.le_u (i32.mul (memory.size) (i32.const 65536)) (i32.const 10000000))
      (then (i32.const 0))
      (else (memory.size))))
)
