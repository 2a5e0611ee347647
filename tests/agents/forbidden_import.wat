;; Imports a function the node does not offer (env.abort, which
;; AssemblyScript emits without its WASI shim): the deploy is refused,
;; naming the import and what may be imported.
(module
  (import "env" "abort" (func (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param $len i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32) (i32.const 0))
)
