;; echo (ABI version 2), for the benchmarks: replies to every message with
;; the same content. examples/agents/echo.wat is the same agent in ABI
;; version 1, which the node translates (and the tests keep working).
;;
;; The reply is an `inform` to the sender, in the same conversation, with
;; `in_reply_to` set to the request's `reply_with`. The host fills in our
;; own name as sender, so the reply envelope leaves it empty.
;; ABI version 2 (docs/ABI.md): a 76-byte header; sender, receiver and
;; protocol lengths at 68, 69, 70, content length at 72.
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))

  ;; Envelopes arrive at offset 1024; replies are built right after them.
  (global $inbox i32 (i32.const 1024))

  ;; Grows memory so that [0, end) is addressable; returns 0 on failure.
  (func $ensure (param $end i32) (result i32)
    (local $have i32)
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.le_u (local.get $end) (local.get $have)) (then (return (i32.const 1))))
    (i32.ne
      (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16)))
      (i32.const -1)))

  ;; Room for the envelope and a reply of the same size.
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.eqz (call $ensure (i32.add (global.get $inbox) (i32.add (i32.mul (local.get $len) (i32.const 2)) (i32.const 64)))))
      (then (return (i32.const -1))))
    (global.get $inbox))

  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $out i32) (local $slen i32) (local $rlen i32) (local $clen i32) (local $plen i32)
    (local.set $slen (i32.load8_u offset=68 (local.get $in)))
    (local.set $rlen (i32.load8_u offset=69 (local.get $in)))
    (local.set $clen (i32.load offset=72 (local.get $in)))
    (local.set $plen (i32.load8_u offset=70 (local.get $in)))
    (local.set $out (i32.and (i32.add (i32.add (local.get $in) (local.get $len)) (i32.const 7)) (i32.const -8)))
    ;; header: version 2, inform, flags 0
    (i32.store8 (local.get $out) (i32.const 2))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i32.store16 offset=2 (local.get $out) (i32.const 0))
    (i64.store offset=4 (local.get $out) (i64.const 0))
    (i64.store offset=12 (local.get $out) (i64.load offset=12 (local.get $in)))
    (i64.store offset=20 (local.get $out) (i64.const 0))
    (i64.store offset=28 (local.get $out) (i64.load offset=20 (local.get $in)))
    (i64.store offset=36 (local.get $out) (i64.const 0))
    (i32.store8 offset=68 (local.get $out) (i32.const 0))
    (i32.store8 offset=69 (local.get $out) (local.get $slen))
    (i32.store16 offset=70 (local.get $out) (i32.const 0))
    (i32.store offset=72 (local.get $out) (local.get $clen))
    ;; receiver = their sender, then the content
    (memory.copy (i32.add (local.get $out) (i32.const 76)) (i32.add (local.get $in) (i32.const 76)) (local.get $slen))
    (memory.copy
      (i32.add (i32.add (local.get $out) (i32.const 76)) (local.get $slen))
      (i32.add (i32.add (i32.add (i32.add (local.get $in) (i32.const 76)) (local.get $slen)) (local.get $rlen)) (local.get $plen))
      (local.get $clen))
    (call $send (local.get $out) (i32.add (i32.add (i32.const 76) (local.get $slen)) (local.get $clen))))
)
