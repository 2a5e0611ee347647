;; state_hog: on each message, stores 100 values of 1 MiB under fresh
;; keys, and replies with two little-endian u32s: how many state_put calls
;; returned 0, and how many returned -5 (over a limit).
(module
  (import "caxton" "state_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 20)
  (global $round (mut i32) (i32.const 0))
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 1024)) (then (return (i32.const -1))))
    (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $i i32) (local $r i32) (local $ok i32) (local $over i32) (local $sn i32) (local $out i32)
    (global.set $round (i32.add (global.get $round) (i32.const 1)))
    ;; key at 512: round, then i (8 bytes); value: 1 MiB from 65536
    (i32.store (i32.const 512) (global.get $round))
    (loop $each
      (i32.store (i32.const 516) (local.get $i))
      (local.set $r (call $put (i32.const 512) (i32.const 8) (i32.const 65536) (i32.const 1048576)))
      (if (i32.eqz (local.get $r)) (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
      (if (i32.eq (local.get $r) (i32.const -5)) (then (local.set $over (i32.add (local.get $over) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $i) (i32.const 100))))
    ;; reply: inform to the sender, in reply to its reply_with, 8 bytes
    (local.set $sn (i32.load8_u offset=36 (local.get $in)))
    (local.set $out (i32.const 2048))
    (i32.store8 (local.get $out) (i32.const 1))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i64.store offset=28 (local.get $out) (i64.load offset=20 (local.get $in)))
    (i32.store8 offset=37 (local.get $out) (local.get $sn))
    (i32.store offset=40 (local.get $out) (i32.const 8))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (i32.add (local.get $in) (i32.const 44)) (local.get $sn))
    (i32.store (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $sn)) (local.get $ok))
    (i32.store offset=4 (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $sn)) (local.get $over))
    (call $send (local.get $out) (i32.add (i32.const 52) (local.get $sn))))
)
