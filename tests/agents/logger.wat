;; logger: writes each message's content to its log (level info) and
;; handles nothing else: for `caxton agent logs` (tests/observability.rs).
;; ABI version 2 (docs/ABI.md): a 76-byte header; sender, receiver and
;; protocol lengths at 68, 69, 70, content length at 72.
(module
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (call $log (i32.const 2)
      (i32.add (i32.add (i32.add (i32.add (local.get $in) (i32.const 76))
        (i32.load8_u offset=68 (local.get $in))) (i32.load8_u offset=69 (local.get $in))) (i32.load8_u offset=70 (local.get $in)))
      (i32.load offset=72 (local.get $in)))
    (i32.const 0))
)
