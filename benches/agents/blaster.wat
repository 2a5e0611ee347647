;; blaster: on each message, sends up to 256 messages (stopping early when
;; the runtime answers busy) to the agent named by its content, then sends
;; the same message to itself: once started, it keeps the runtime as busy
;; as it can take, with no one outside the node driving it, until it is
;; stopped (undeployed).
;; ABI version 2 (docs/ABI.md): a 76-byte header; sender, receiver and
;; protocol lengths at 68, 69, 70, content length at 72.
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  ;; a fixed inbox below the messages it builds at 8192 (docs/ABI.md)
  (func (export "caxton_inbox_ptr") (result i32) (i32.const 1024))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 7168))
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $cp i32) (local $cn i32) (local $out i32) (local $i i32) (local $rn i32)
    (local.set $rn (i32.load8_u offset=69 (local.get $in)))
    (local.set $cp (i32.add (i32.add (i32.add (i32.add (local.get $in) (i32.const 76))
      (i32.load8_u offset=68 (local.get $in))) (local.get $rn)) (i32.load8_u offset=70 (local.get $in))))
    (local.set $cn (i32.load offset=72 (local.get $in)))
    (local.set $out (i32.const 8192))
    (i32.store8 (local.get $out) (i32.const 2))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i32.store8 offset=69 (local.get $out) (local.get $cn))
    (i32.store offset=72 (local.get $out) (i32.const 1))
    (memory.copy (i32.add (local.get $out) (i32.const 76)) (local.get $cp) (local.get $cn))
    (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 76)) (local.get $cn)) (i32.const 120))
    (block $busy
      (loop $blast
        (br_if $busy (i32.ne (call $send (local.get $out) (i32.add (i32.const 77) (local.get $cn))) (i32.const 0)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $blast (i32.lt_u (local.get $i) (i32.const 256)))))
    ;; again: the same content, to ourselves (our name is this message's receiver)
    (local.set $out (i32.const 16384))
    (i32.store8 (local.get $out) (i32.const 2))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i32.store8 offset=69 (local.get $out) (local.get $rn))
    (i32.store offset=72 (local.get $out) (local.get $cn))
    (memory.copy (i32.add (local.get $out) (i32.const 76))
      (i32.add (i32.add (local.get $in) (i32.const 76)) (i32.load8_u offset=68 (local.get $in))) (local.get $rn))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 76)) (local.get $rn)) (local.get $cp) (local.get $cn))
    (drop (call $send (local.get $out) (i32.add (i32.add (i32.const 76) (local.get $rn)) (local.get $cn))))
    (i32.const 0))
)
