;; Writes to standard output without end: one line of 1 MiB with no
;; newline, then 5,000 short lines, every message. The log must stay within
;; the instance's budget (the rest dropped and counted), and a line is
;; never longer than the node's 4 KiB.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 32)
  ;; 0: iovec {16, 1 MiB}; 8: iovec {2000000, 6}; 2000000: "shout\n".
  (data (i32.const 0) "\10\00\00\00\00\00\10\00\80\84\1e\00\06\00\00\00")
  (data (i32.const 2000000) "shout\n")
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1100000))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $i i32)
    (memory.fill (i32.const 16) (i32.const 65) (i32.const 1048576))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 100)))
    (block $done
      (loop $lines
        (br_if $done (i32.ge_u (local.get $i) (i32.const 5000)))
        (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 100)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $lines)))
    (i32.const 0))
)
