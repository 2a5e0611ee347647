;; writer: stores each message's content under key "k" (a handler that
;; writes state).
;; ABI version 2 (docs/ABI.md): a 76-byte header; sender, receiver and
;; protocol lengths at 68, 69, 70, content length at 72.
(module
  (import "caxton" "state_put" (func $state_put (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  ;; a fixed inbox (docs/ABI.md): envelopes are written at 1024, no caxton_alloc call
  (func (export "caxton_inbox_ptr") (result i32) (i32.const 1024))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 64512))
  (data (i32.const 0) "k")
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (call $state_put (i32.const 0) (i32.const 1)
      (i32.add (i32.add (i32.add (local.get $in) (i32.const 76))
        (i32.load8_u offset=68 (local.get $in))) (i32.load8_u offset=69 (local.get $in)))
      (i32.load offset=72 (local.get $in))))
)
