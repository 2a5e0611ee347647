;; counter_then_trap: examples/agents/counter.wat, but the count it replies
;; with is read back from its state after the write (a handler sees its own
;; writes), and a message whose content starts with "crash" writes its count
;; and then traps: that write must be lost with the handler (`storage` rule 2).
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (import "caxton" "state_get" (func $state_get (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "state_put" (func $state_put (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0..5: the key; 8..16: the count; 16..40: digits; 1024..: envelopes
  (data (i32.const 0) "count")

  (func (export "caxton_alloc") (param $len i32) (result i32)
    ;; Requests carry small contents; refuse what does not fit one page.
    (if (i32.gt_u (local.get $len) (i32.const 30000)) (then (return (i32.const -1))))
    (i32.const 1024))

  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $count i64) (local $n i64) (local $digits i32) (local $ndigits i32)
    (local $out i32) (local $slen i32) (local $r i32)
    ;; count = state["count"] or 0, plus one
    (local.set $r (call $state_get (i32.const 0) (i32.const 5) (i32.const 8) (i32.const 8)))
    (if (i32.eq (local.get $r) (i32.const 8))
      (then (local.set $count (i64.load (i32.const 8)))))
    (local.set $count (i64.add (local.get $count) (i64.const 1)))
    (i64.store (i32.const 8) (local.get $count))
    (local.set $r (call $state_put (i32.const 0) (i32.const 5) (i32.const 8) (i32.const 8)))
    (if (i32.ne (local.get $r) (i32.const 0)) (then (return (local.get $r))))
    ;; "cras" little-endian, at the content (after sender and receiver)
    (if (i32.ge_u (i32.load offset=40 (local.get $in)) (i32.const 4))
      (then (if (i32.eq (i32.load (i32.add (i32.add (i32.add (local.get $in) (i32.const 44))
                  (i32.load8_u offset=36 (local.get $in))) (i32.load8_u offset=37 (local.get $in))))
                (i32.const 0x73617263))
        (then unreachable))))
    ;; read the count back from the state: the handler's own write
    (i64.store (i32.const 8) (i64.const 0))
    (if (i32.ne (call $state_get (i32.const 0) (i32.const 5) (i32.const 8) (i32.const 8)) (i32.const 8))
      (then unreachable))
    (local.set $count (i64.load (i32.const 8)))
    ;; digits, written backwards from offset 40
    (local.set $digits (i32.const 40))
    (local.set $n (local.get $count))
    (loop $more
      (local.set $digits (i32.sub (local.get $digits) (i32.const 1)))
      (i32.store8 (local.get $digits) (i32.wrap_i64 (i64.add (i64.rem_u (local.get $n) (i64.const 10)) (i64.const 48))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $more (i64.ne (local.get $n) (i64.const 0))))
    (local.set $ndigits (i32.sub (i32.const 40) (local.get $digits)))
    ;; reply: inform to the sender, in_reply_to = their reply_with
    (local.set $slen (i32.load8_u offset=36 (local.get $in)))
    (local.set $out (i32.const 40000))
    (i32.store8 (local.get $out) (i32.const 1))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i32.store16 offset=2 (local.get $out) (i32.const 0))
    (i64.store offset=4 (local.get $out) (i64.const 0))
    (i64.store offset=12 (local.get $out) (i64.load offset=12 (local.get $in)))
    (i64.store offset=20 (local.get $out) (i64.const 0))
    (i64.store offset=28 (local.get $out) (i64.load offset=20 (local.get $in)))
    (i32.store8 offset=36 (local.get $out) (i32.const 0))
    (i32.store8 offset=37 (local.get $out) (local.get $slen))
    (i32.store16 offset=38 (local.get $out) (i32.const 0))
    (i32.store offset=40 (local.get $out) (local.get $ndigits))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (i32.add (local.get $in) (i32.const 44)) (local.get $slen))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $slen)) (local.get $digits) (local.get $ndigits))
    (call $send (local.get $out) (i32.add (i32.add (i32.const 44) (local.get $slen)) (local.get $ndigits))))
)
