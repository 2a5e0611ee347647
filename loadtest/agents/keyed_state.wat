;; keyed_state: the keyed_zipf scenario's agent, deployed with ?keyed=true.
;; Each key's activation writes its state on every message (key "k" gets
;; the message's id, so every answer waits for its shard's commit) and
;; answers the sender with an `agree` carrying the request's content,
;; [seq u64][scheduled u64]. Envelopes are ABI version 2 (docs/ABI.md):
;; header 76 bytes, lengths of sender, receiver and protocol at 68, 69, 70,
;; content length at 72.
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (import "caxton" "state_put" (func $state_put (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "k")
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  (func (export "caxton_inbox_ptr") (result i32) (i32.const 1024))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 4000))
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 4000)) (then (return (i32.const -1))))
    (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $sp i32) (local $sn i32) (local $cp i32) (local $out i32)
    (if (i32.ne (call $state_put (i32.const 0) (i32.const 1) (i32.add (local.get $in) (i32.const 4)) (i32.const 8)) (i32.const 0))
      (then (return (i32.const 1))))
    (local.set $sp (i32.add (local.get $in) (i32.const 76)))
    (local.set $sn (i32.load8_u offset=68 (local.get $in)))
    (local.set $cp (i32.add (i32.add (i32.add (local.get $sp) (local.get $sn)) (i32.load8_u offset=69 (local.get $in))) (i32.load8_u offset=70 (local.get $in))))
    ;; agree to the sender: header zeroed but version, performative,
    ;; conversation, receiver length and content length
    (local.set $out (i32.const 8192))
    (memory.fill (local.get $out) (i32.const 0) (i32.const 76))
    (i32.store8 (local.get $out) (i32.const 2))
    (i32.store8 offset=1 (local.get $out) (i32.const 7))
    (i64.store offset=12 (local.get $out) (i64.load offset=12 (local.get $in)))
    (i32.store8 offset=69 (local.get $out) (local.get $sn))
    (i32.store offset=72 (local.get $out) (i32.const 16))
    (memory.copy (i32.add (local.get $out) (i32.const 76)) (local.get $sp) (local.get $sn))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 76)) (local.get $sn)) (local.get $cp) (i32.const 16))
    (call $send (local.get $out) (i32.add (i32.const 92) (local.get $sn))))
)
