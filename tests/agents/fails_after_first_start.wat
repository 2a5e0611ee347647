;; fails_after_first_start: its first `caxton_init` writes "started" to its
;; state and succeeds; every later one (a restart of the node) finds it and
;; returns 7. A restored instance that cannot start is quarantined with
;; that reason while the node serves the rest (issue 25).
(module
  (import "caxton" "state_get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "state_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "started")
  (func (export "caxton_init") (result i32)
    (if (i32.ge_s (call $get (i32.const 0) (i32.const 7) (i32.const 64) (i32.const 0)) (i32.const 0))
      (then (return (i32.const 7))))
    (call $put (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 1)))
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))
