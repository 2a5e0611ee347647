;; slow: burns 200,000 loop iterations (about a tenth of a millisecond) per message, so its mailbox
;; fills when messages arrive faster than it handles them.
(module
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 200000))))
    (i32.const 0))
)
