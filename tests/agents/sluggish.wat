;; sluggish: burns 60 million loop iterations per message (tens of
;; milliseconds), past ADR-0017's 10 ms processing p99 target.
(module
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 60000000))))
    (i32.const 0))
)
