;; Calls WASI preview 1 as a careless or hostile program would, and replies
;; with what each call returned: one byte per probe (the errno), in order.
;; tests/toolchains.rs checks every byte against what a program expects.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $sched_yield (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  ;; 0: an iovec {buf 100, len 11}; 8: an iovec whose buffer is past memory;
  ;; 100: the text; 200..300: results the calls write; 3000: the reply's
  ;; content (one byte per probe); 4096: the reply; 16384: the inbox.
  (data (i32.const 0) "\64\00\00\00\0b\00\00\00\00\00\ff\7f\10\00\00\00")
  (data (i32.const 100) "probe line\n")

  (global $n (mut i32) (i32.const 0))
  (func $probe (param $errno i32)
    (i32.store8 (i32.add (i32.const 3000) (global.get $n)) (local.get $errno))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))

  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 40000)) (then (return (i32.const -1))))
    (i32.const 16384))

  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $slen i32) (local $out i32)
    (global.set $n (i32.const 0))
    ;; 0: a good write of one line; 1: it wrote 11 bytes.
    (call $probe (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 200)))
    (call $probe (i32.load (i32.const 200)))
    ;; 2: the iovec list past memory; 3: a buffer past memory; 4: too many iovecs.
    (call $probe (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 200)))
    (call $probe (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 200)))
    (call $probe (call $fd_write (i32.const 1) (i32.const 0) (i32.const 100000) (i32.const 200)))
    ;; 5: no such fd; 6: standard input is not for writing; 7: nwritten past memory.
    (call $probe (call $fd_write (i32.const 5) (i32.const 0) (i32.const 1) (i32.const 200)))
    (call $probe (call $fd_write (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 200)))
    (call $probe (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const -4)))
    ;; 8: standard input reads empty; 9: the count read.
    (i32.store (i32.const 204) (i32.const 99))
    (call $probe (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 204)))
    (call $probe (i32.load (i32.const 204)))
    ;; 10: stdout is a character device (11: filetype 2); 12: nothing preopened.
    (call $probe (call $fd_fdstat_get (i32.const 1) (i32.const 208)))
    (call $probe (i32.load8_u (i32.const 208)))
    (call $probe (call $fd_prestat_get (i32.const 3) (i32.const 240)))
    ;; 13: no seeking on a terminal; 14: no file system.
    (call $probe (call $fd_seek (i32.const 1) (i64.const 0) (i32.const 0) (i32.const 240)))
    (call $probe (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 240)))
    ;; 15: realtime; 16: CPU time is refused; 17: a clock past memory.
    (call $probe (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 248)))
    (call $probe (call $clock_time_get (i32.const 2) (i64.const 1) (i32.const 248)))
    (call $probe (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 65530)))
    ;; 18: 16 random bytes; 19: 2 MiB at once; 20: into nowhere.
    (call $probe (call $random_get (i32.const 256) (i32.const 16)))
    (call $probe (call $random_get (i32.const 256) (i32.const 2097152)))
    (call $probe (call $random_get (i32.const 65530) (i32.const 16)))
    ;; 21: no arguments (22: count 0); 23: yield; 24: no polling.
    (i32.store (i32.const 212) (i32.const 7))
    (call $probe (call $args_sizes_get (i32.const 212) (i32.const 216)))
    (call $probe (i32.load (i32.const 212)))
    (call $probe (call $sched_yield))
    (call $probe (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 240)))
    ;; The reply: an inform to the sender, in_reply_to its reply_with.
    (local.set $slen (i32.load8_u offset=36 (local.get $in)))
    (local.set $out (i32.const 4096))
    (memory.fill (local.get $out) (i32.const 0) (i32.const 44))
    (i32.store8 (local.get $out) (i32.const 1))
    (i32.store8 offset=1 (local.get $out) (i32.const 1))
    (i64.store offset=12 (local.get $out) (i64.load offset=12 (local.get $in)))
    (i64.store offset=28 (local.get $out) (i64.load offset=20 (local.get $in)))
    (i32.store8 offset=37 (local.get $out) (local.get $slen))
    (i32.store offset=40 (local.get $out) (global.get $n))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (i32.add (local.get $in) (i32.const 44)) (local.get $slen))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $slen)) (i32.const 3000) (global.get $n))
    (call $send (local.get $out) (i32.add (i32.add (i32.const 44) (local.get $slen)) (global.get $n))))
)
