;; sink: handles every message and does nothing else (a trivial handler).
;; ABI version 2 (docs/ABI.md): a 76-byte header; sender, receiver and
;; protocol lengths at 68, 69, 70, content length at 72.
(module
  (memory (export "memory") 1)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  ;; a fixed inbox (docs/ABI.md): envelopes are written at 1024, no caxton_alloc call
  (func (export "caxton_inbox_ptr") (result i32) (i32.const 1024))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 64512))
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32) (i32.const 0))
)
