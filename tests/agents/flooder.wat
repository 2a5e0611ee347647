;; flooder: on each message, sends 2000 messages to the agent named by the
;; content, then replies with two little-endian u32s: how many sends were
;; accepted (0) and how many were refused as busy (-2).
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $i i32) (local $r i32) (local $ok i32) (local $busy i32)
    (local $sn i32) (local $cp i32) (local $cn i32) (local $out i32)
    (local.set $sn (i32.load8_u offset=36 (local.get $in)))
    (local.set $cp (i32.add (i32.add (i32.add (local.get $in) (i32.const 44)) (local.get $sn)) (i32.load8_u offset=37 (local.get $in))))
    (local.set $cn (i32.load offset=40 (local.get $in)))
    ;; flood envelope at 8192: request, receiver = content, content "x"
    (local.set $out (i32.const 8192))
    (i32.store8 (local.get $out) (i32.const 1))
    (i32.store8 offset=37 (local.get $out) (local.get $cn))
    (i32.store offset=40 (local.get $out) (i32.const 1))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (local.get $cp) (local.get $cn))
    (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $cn)) (i32.const 120))
    (loop $flood
      (local.set $r (call $send (local.get $out) (i32.add (i32.const 45) (local.get $cn))))
      (if (i32.eqz (local.get $r)) (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
      (if (i32.eq (local.get $r) (i32.const -2)) (then (local.set $busy (i32.add (local.get $busy) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $flood (i32.lt_u (local.get $i) (i32.const 2000))))
    ;; reply to the sender with the counts
    (local.set $out (i32.const 16384))
    (i32.store8 (local.get $out) (i32.const 1))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i64.store offset=28 (local.get $out) (i64.load offset=20 (local.get $in)))
    (i32.store8 offset=37 (local.get $out) (local.get $sn))
    (i32.store offset=40 (local.get $out) (i32.const 8))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (i32.add (local.get $in) (i32.const 44)) (local.get $sn))
    (i32.store (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $sn)) (local.get $ok))
    (i32.store offset=4 (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $sn)) (local.get $busy))
    (call $send (local.get $out) (i32.add (i32.const 52) (local.get $sn))))
)
