;; forward: sends each message on to the agent named by its content, with
;; the same content: one agent-to-agent hop per injected message.
;; ABI version 2 (docs/ABI.md): a 76-byte header; sender, receiver and
;; protocol lengths at 68, 69, 70, content length at 72.
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  ;; a fixed inbox below the reply at 8192 (docs/ABI.md)
  (func (export "caxton_inbox_ptr") (result i32) (i32.const 1024))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 7168))
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $cp i32) (local $cn i32) (local $out i32)
    (local.set $cp (i32.add (i32.add (i32.add (local.get $in) (i32.const 76))
      (i32.load8_u offset=68 (local.get $in))) (i32.add (i32.load8_u offset=69 (local.get $in)) (i32.load8_u offset=70 (local.get $in)))))
    (local.set $cn (i32.load offset=72 (local.get $in)))
    (local.set $out (i32.const 8192))
    (i32.store8 (local.get $out) (i32.const 2))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i64.store offset=12 (local.get $out) (i64.load offset=12 (local.get $in)))
    (i32.store8 offset=68 (local.get $out) (i32.const 0))
    (i32.store8 offset=69 (local.get $out) (local.get $cn))
    (i32.store offset=72 (local.get $out) (local.get $cn))
    (memory.copy (i32.add (local.get $out) (i32.const 76)) (local.get $cp) (local.get $cn))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 76)) (local.get $cn)) (local.get $cp) (local.get $cn))
    (call $send (local.get $out) (i32.add (i32.const 76) (i32.mul (local.get $cn) (i32.const 2)))))
)
