;; copier: a memcpy-heavy handler, as compiled code from real toolchains is
;; (Rust and C emit memory.copy for every memcpy): copies its envelope 16
;; times into a scratch area, 1 KiB at a time.
;; ABI version 2 (docs/ABI.md): a 76-byte header; sender, receiver and
;; protocol lengths at 68, 69, 70, content length at 72.
(module
  (memory (export "memory") 2)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  ;; a fixed inbox (docs/ABI.md): envelopes are written at 1024, no caxton_alloc call
  (func (export "caxton_inbox_ptr") (result i32) (i32.const 1024))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 64512))
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $i i32)
    (loop $each
      (memory.copy (i32.add (i32.const 65536) (i32.shl (i32.and (local.get $i) (i32.const 15)) (i32.const 10))) (local.get $in) (i32.const 1024))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $i) (i32.const 16))))
    (i32.const 0))
)
