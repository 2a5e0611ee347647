;; reply_forger: on each message, sends an INFORM "forged" to every runtime
;; name from @api/1 to @api/3000, hoping to answer REST callers waiting on
;; other agents (their in_reply_to cannot be guessed).
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 4140) "@api/")
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  ;; writes n in decimal at 4145; returns its length
  (func $digits (param $n i32) (result i32)
    (local $len i32) (local $m i32) (local $i i32)
    (local.set $m (local.get $n))
    (loop $count
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (local.set $m (i32.div_u (local.get $m) (i32.const 10)))
      (br_if $count (i32.ne (local.get $m) (i32.const 0))))
    (local.set $i (local.get $len))
    (local.set $m (local.get $n))
    (loop $write
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (i32.const 4145) (local.get $i)) (i32.add (i32.const 48) (i32.rem_u (local.get $m) (i32.const 10))))
      (local.set $m (i32.div_u (local.get $m) (i32.const 10)))
      (br_if $write (i32.ne (local.get $i) (i32.const 0))))
    (local.get $len))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $n i32) (local $d i32) (local $rlen i32)
    (local.set $n (i32.const 1))
    ;; envelope at 4096: inform, in_reply_to = the receiver's own number (a guess)
    (i32.store8 (i32.const 4096) (i32.const 1))
    (i32.store8 (i32.const 4097) (i32.const 1))
    (loop $each
      (local.set $d (call $digits (local.get $n)))
      (local.set $rlen (i32.add (i32.const 5) (local.get $d)))
      (i64.store (i32.const 4124) (i64.extend_i32_u (local.get $n)))
      (i32.store8 (i32.const 4133) (local.get $rlen))
      (i32.store (i32.const 4136) (i32.const 6))
      ;; content "forged" after the receiver
      (i32.store (i32.add (i32.const 4140) (local.get $rlen)) (i32.const 0x67726f66))
      (i32.store16 (i32.add (i32.const 4144) (local.get $rlen)) (i32.const 0x6465))
      (drop (call $send (i32.const 4096) (i32.add (i32.const 50) (local.get $rlen))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $each (i32.le_u (local.get $n) (i32.const 3000))))
    (i32.const 0))
)
