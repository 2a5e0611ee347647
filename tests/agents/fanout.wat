;; fanout: on each message, sends 8 messages of 1 MiB (the content limit) to
;; the agent named by the content, all in conversation 42, from this one
;; handler call; then replies to the sender with one ASCII digit: how many
;; of the 8 sends were accepted.
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  ;; 24 pages: the inbox at 1024, the reply at 2048, the big envelope at 4096.
  (memory (export "memory") 24)
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 1024)) (then (return (i32.const -1))))
    (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $i i32) (local $ok i32) (local $sn i32) (local $cp i32) (local $cn i32) (local $out i32)
    (local.set $sn (i32.load8_u offset=36 (local.get $in)))
    (local.set $cp (i32.add (i32.add (i32.add (local.get $in) (i32.const 44)) (local.get $sn)) (i32.load8_u offset=37 (local.get $in))))
    (local.set $cn (i32.load offset=40 (local.get $in)))
    (if (i32.gt_u (local.get $cn) (i32.const 64)) (then (return (i32.const 1))))
    ;; the big envelope: request, conversation 42, receiver = content, 1 MiB of zeros
    (local.set $out (i32.const 4096))
    (i32.store8 (local.get $out) (i32.const 1))
    (i64.store offset=12 (local.get $out) (i64.const 42))
    (i32.store8 offset=37 (local.get $out) (local.get $cn))
    (i32.store offset=40 (local.get $out) (i32.const 1048576))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (local.get $cp) (local.get $cn))
    (loop $each
      (if (i32.eqz (call $send (local.get $out) (i32.add (i32.const 1048620) (local.get $cn))))
        (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $i) (i32.const 8))))
    ;; the reply: inform to the sender, in reply to its reply_with
    (local.set $out (i32.const 2048))
    (i32.store8 (local.get $out) (i32.const 1))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i64.store offset=28 (local.get $out) (i64.load offset=20 (local.get $in)))
    (i32.store8 offset=37 (local.get $out) (local.get $sn))
    (i32.store offset=40 (local.get $out) (i32.const 1))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (i32.add (local.get $in) (i32.const 44)) (local.get $sn))
    (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $sn)) (i32.add (i32.const 48) (local.get $ok)))
    (call $send (local.get $out) (i32.add (i32.const 45) (local.get $sn))))
)
