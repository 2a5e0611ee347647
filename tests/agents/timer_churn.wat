;; timer_churn: on each message sets a timer an hour away and cancels it,
;; 500 times; a message whose content starts with "t" sets 500 and then
;; traps, so they are rolled back. Both left an entry per timer in the
;; shard's queue for up to 30 days (issue 25): 6.8 M entries in 30 s.
(module
  (import "caxton" "timer_set" (func $set (param i64 i32 i32) (result i64)))
  (import "caxton" "timer_cancel" (func $cancel (param i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32) (local $i i32) (local $id i64) (local $trap i32)
    ;; content's first byte (version 1: after the 44-byte header and names)
    (local.set $trap (i32.eq (i32.load8_u (i32.add (i32.add (local.get $in) (i32.const 44))
      (i32.add (i32.load8_u offset=36 (local.get $in)) (i32.load8_u offset=37 (local.get $in))))) (i32.const 116)))
    (loop $l
      (local.set $id (call $set (i64.const 3600000) (i32.const 0) (i32.const 0)))
      (if (i32.eqz (local.get $trap)) (then (drop (call $cancel (local.get $id)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 500))))
    (if (local.get $trap) (then unreachable))
    (i32.const 0)))
