;; start_calls_host: its (start) function calls host functions before any
;; handler runs: it cancels a timer (the call that opened a savepoint
;; outside any call and aborted the node, issue 25), sets one, writes state
;; and sends to `counter`. Each runs inside the start's call bracket.
(module
  (import "caxton" "timer_cancel" (func $cancel (param i64) (result i32)))
  (import "caxton" "timer_set" (func $set (param i64 i32 i32) (result i64)))
  (import "caxton" "state_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $cancelled (mut i32) (i32.const 99))
  (data (i32.const 0) "k")
  ;; a version 1 envelope to "counter" from 0 bytes of sender, content "s"
  (data (i32.const 256) "\01\01\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\07\00\00\01\00\00\00\63\6f\75\6e\74\65\72\73")
  (func $start
    (global.set $cancelled (call $cancel (i64.const 1)))
    (drop (call $set (i64.const 3600000) (i32.const 0) (i32.const 1)))
    (drop (call $put (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)))
    (drop (call $send (i32.const 256) (i32.const 52))))
  (start $start)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))
