;; abuser: hands the host bad pointers and envelopes, and replies with the
;; codes it got back, as text: "send_oob send_short send_badname get_oob".
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (import "caxton" "state_get" (func $state_get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $r i32)
    ;; envelope past the end of memory: -3
    (local.set $r (call $send (i32.const 65500) (i32.const 100)))
    (if (i32.ne (local.get $r) (i32.const -3)) (then (return (i32.const 101))))
    ;; shorter than a header: -3
    (local.set $r (call $send (i32.const 0) (i32.const 10)))
    (if (i32.ne (local.get $r) (i32.const -3)) (then (return (i32.const 102))))
    ;; state_get with a buffer outside memory: -3
    (local.set $r (call $state_get (i32.const 0) (i32.const 1) (i32.const 65530) (i32.const 100)))
    (if (i32.ne (local.get $r) (i32.const -3)) (then (return (i32.const 103))))
    ;; oversize envelope: -4
    (local.set $r (call $send (i32.const 0) (i32.const 2000000)))
    (if (i32.ne (local.get $r) (i32.const -4)) (then (return (i32.const 104))))
    ;; a well-formed envelope to an unknown agent: -1
    (i32.store8 (i32.const 2048) (i32.const 1))
    (i32.store8 offset=37 (i32.const 2048) (i32.const 6))
    (i32.store (i32.const 2092) (i32.const 0x6f626f6e)) ;; "nobo"
    (i32.store16 (i32.const 2096) (i32.const 0x7964))   ;; "dy"
    (local.set $r (call $send (i32.const 2048) (i32.const 50)))
    (if (i32.ne (local.get $r) (i32.const -1)) (then (return (i32.const 105))))
    ;; a bad receiver name ("NOBODY"): -3
    (i32.store (i32.const 2092) (i32.const 0x4f424f4e))
    (local.set $r (call $send (i32.const 2048) (i32.const 50)))
    (if (i32.ne (local.get $r) (i32.const -3)) (then (return (i32.const 106))))
    (i32.const 0))
)
