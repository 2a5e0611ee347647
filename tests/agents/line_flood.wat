;; line_flood: on each message writes 8 MiB of "a\n" to standard output,
;; twelve times over: 50 M lines. Priced by the byte, a line cost almost
;; nothing while each took a lock and a clock read, and one message held a
;; shard for 3.3 s (issue 25). Priced by the line, it stops at its slice.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 130)
  (func (export "caxton_init") (result i32) (local $at i32)
    ;; "a\n" from 65536 for 8 MiB; the iovec at 0 names it.
    (local.set $at (i32.const 65536))
    (loop $fill
      (i32.store (local.get $at) (i32.const 0x0a610a61))
      (local.set $at (i32.add (local.get $at) (i32.const 4)))
      (br_if $fill (i32.lt_u (local.get $at) (i32.const 8454144))))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const 8388608))
    (i32.const 0))
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (local $i i32)
    (loop $l
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 12))))
    (i32.const 0)))
