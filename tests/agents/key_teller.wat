;; key_teller: a keyed agent that learns its own address in caxton_init
;; (`self_name`: TYPE/KEY), keeps it in its state under "me", and answers
;; every message with what that state holds. Each key's activation must
;; answer with its own address: its init saw its key, and its state is no
;; one else's.
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (import "caxton" "state_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "state_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "self_name" (func $self_name (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0..2: the key "me"; 512..768: the address; 768..1024: what state holds
  (data (i32.const 0) "me")
  (func (export "caxton_init") (result i32) (local $n i32)
    (local.set $n (call $self_name (i32.const 512) (i32.const 256)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (local.get $n))))
    (call $put (i32.const 0) (i32.const 2) (i32.const 512) (local.get $n)))
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 30000)) (then (return (i32.const -1))))
    (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $vlen i32) (local $slen i32) (local $out i32)
    (local.set $vlen (call $get (i32.const 0) (i32.const 2) (i32.const 768) (i32.const 256)))
    (if (i32.lt_s (local.get $vlen) (i32.const 0)) (then (local.set $vlen (i32.const 0))))
    ;; reply (ABI version 1): inform to the sender, in_reply_to = their reply_with
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
    (i32.store offset=40 (local.get $out) (local.get $vlen))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (i32.add (local.get $in) (i32.const 44)) (local.get $slen))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $slen)) (i32.const 768) (local.get $vlen))
    (call $send (local.get $out) (i32.add (i32.add (i32.const 44) (local.get $slen)) (local.get $vlen))))
)
