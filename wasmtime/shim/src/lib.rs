//! Realm's Wasmtime C API shim: re-exports the whole C API of `wasmtime-c-api-impl` and adds the one
//! entry point the upstream C API lacks.
pub use wasmtime_c_api::*;

use wasmtime_c_api::wasmtime::StoreLimitsBuilder;

/// Like `wasmtime_store_limiter`, but a `memory.grow`/`table.grow` beyond the limits *traps* instead of
/// returning -1, so a guest that exceeds its memory cap ends its request with a clear error instead of
/// looping on a failed allocation. Negative arguments mean "no limit", as upstream.
#[unsafe(no_mangle)]
pub extern "C" fn realm_store_limiter_trapping(
    store: &mut wasmtime_store_t,
    memory_size: i64,
    table_elements: i64,
    instances: i64,
    tables: i64,
    memories: i64,
) {
    // Installs the limiter callback (which reads `store_limits` from the store data)...
    wasmtime_store_limiter(store, memory_size, table_elements, instances, tables, memories);
    // ...then replaces the limits with the same numbers plus trap-on-grow-failure.
    let mut b = StoreLimitsBuilder::new().trap_on_grow_failure(true);
    if memory_size >= 0 {
        b = b.memory_size(memory_size as usize);
    }
    if table_elements >= 0 {
        b = b.table_elements(table_elements as usize);
    }
    if instances >= 0 {
        b = b.instances(instances as usize);
    }
    if tables >= 0 {
        b = b.tables(tables as usize);
    }
    if memories >= 0 {
        b = b.memories(memories as usize);
    }
    let mut cx = wasmtime_store_context(store);
    cx.data_mut().store_limits = b.build();
}

/// Fallible engine creation. Upstream `wasm_engine_new_with_config` unwraps `Engine::new`, which with
/// `panic = "abort"` would take the whole process down when the configuration is rejected or the pooling
/// allocator cannot reserve its address space. This returns the error instead. Takes ownership of `config`
/// either way; on success `*out` owns a `wasm_engine_t` to be freed with `wasm_engine_delete`.
#[unsafe(no_mangle)]
pub extern "C" fn realm_engine_new(
    config: Box<wasm_config_t>,
    out: &mut *mut wasm_engine_t,
) -> Option<Box<wasmtime_error_t>> {
    use wasmtime_c_api::wasmtime::{Config, Engine};
    // SAFETY: `wasm_config_t` and `wasm_engine_t` are `#[repr(C)]` structs whose single field is a
    // `Config` / an `Engine`, so each has exactly the layout of its field.
    let config: Box<Config> = unsafe { Box::from_raw(Box::into_raw(config) as *mut Config) };
    match Engine::new(&config) {
        Ok(engine) => {
            *out = Box::into_raw(Box::new(engine)) as *mut wasm_engine_t;
            None
        }
        Err(e) => Some(Box::new(wasmtime_error_t::from(e))),
    }
}
