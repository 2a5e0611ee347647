;; crashy: traps (unreachable) when the content starts with "crash",
;; returns error 7 when it starts with "fail", else handles the message.
(module
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $c i32)
    (local.set $c (i32.add (i32.add (i32.add (local.get $in) (i32.const 44))
      (i32.load8_u offset=36 (local.get $in))) (i32.load8_u offset=37 (local.get $in))))
    (if (i32.lt_u (i32.load offset=40 (local.get $in)) (i32.const 4)) (then (return (i32.const 0))))
    ;; "cras" little-endian
    (if (i32.eq (i32.load (local.get $c)) (i32.const 0x73617263)) (then unreachable))
    ;; "fail"
    (if (i32.eq (i32.load (local.get $c)) (i32.const 0x6c696166)) (then (return (i32.const 7))))
    (i32.const 0))
)
