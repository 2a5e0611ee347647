;; inbox: declares a fixed inbox of 256 bytes at 1024 and traps if
;; caxton_alloc is ever called: an envelope that fits must arrive without
;; it; a larger one goes through caxton_alloc (and so traps here).
(module
  (memory (export "memory") 1)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  (func (export "caxton_inbox_ptr") (result i32) (i32.const 1024))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 256))
  (func (export "caxton_alloc") (param $len i32) (result i32) unreachable)
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    ;; handled only if the envelope is where the inbox is
    (if (i32.ne (local.get $in) (i32.const 1024)) (then unreachable))
    (i32.const 0))
)
