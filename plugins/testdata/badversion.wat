;; badversion: claims ABI version 2; the host must refuse to load it.
(module
  (memory (export "memory") 1)
  (func (export "varwatch_abi_version") (result i32) (i32.const 2))
  (func (export "varwatch_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "varwatch_filter") (param i32 i32) (result i64) (i64.const 0))
)
