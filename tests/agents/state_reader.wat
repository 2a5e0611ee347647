;; state_reader: keeps one value of 1 MiB, and on each message reads it
;; 8,000 times into a buffer of 0 bytes. SQLite reads the whole value each
;; time; priced by the bytes copied, this held a shard for 0.75 s (issue
;; 25). Priced by the bytes read, the handler stops at its slice.
(module
  (import "caxton" "state_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "state_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 17)
  (data (i32.const 0) "big")
  (func (export "caxton_init") (result i32)
    (if (i32.lt_s (call $get (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 0))
      (then (drop (call $put (i32.const 0) (i32.const 3) (i32.const 65536) (i32.const 1048576)))))
    (i32.const 0))
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (local $i i32)
    (loop $l
      (drop (call $get (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 0)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 8000))))
    (i32.const 0)))
