;; molasses: burns about 2 ms per message (4 million loop iterations,
;; within the 10 ms slice) and answers nothing, so that its mailbox holds
;; messages long enough for a test to undeploy it under them.
(module
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $i i32)
    (block $done
      (loop $burn
        (br_if $done (i32.ge_u (local.get $i) (i32.const 4000000)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $burn)))
    (i32.const 0))
)
