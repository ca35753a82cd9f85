;; nofilter: lacks varwatch_filter; the host must refuse to load it.
(module
  (memory (export "memory") 1)
  (func (export "varwatch_abi_version") (result i32) (i32.const 1))
  (func (export "varwatch_alloc") (param i32) (result i32) (i32.const 1024))
)
