//! Raw declarations of libotter's C ABI, one for one with `capi/include/otter/otter.h` (read its
//! comments for each function's contract). Everything here is `unsafe` to call; the safe API is
//! the crate root. `tests/header.rs` checks this file against the header: every `otter_` function
//! is declared here with the same number of parameters, every enumerator has the header's value,
//! and `otter_tensor_view` has the C layout.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_double, c_int, c_void};

pub const OTTER_API_VERSION: u32 = 1000;

/// `otter_status` (a C enum: passed as int).
pub type otter_status = c_int;
pub const OTTER_OK: otter_status = 0;
pub const OTTER_ERROR_INVALID_ARGUMENT: otter_status = 1;
pub const OTTER_ERROR_NOT_FOUND: otter_status = 2;
pub const OTTER_ERROR_INVALID_MODEL: otter_status = 3;
pub const OTTER_ERROR_UNSUPPORTED: otter_status = 4;
pub const OTTER_ERROR_IO: otter_status = 5;
pub const OTTER_ERROR_OUT_OF_MEMORY: otter_status = 6;
pub const OTTER_ERROR_WRONG_STATE: otter_status = 7;
pub const OTTER_ERROR_INTERNAL: otter_status = 8;
pub const OTTER_ERROR_NON_FINITE: otter_status = 9;
pub const OTTER_ERROR_BUSY: otter_status = 10;
pub const OTTER_ERROR_DISTRIBUTED: otter_status = 11;

/// `otter_dtype`: ONNX TensorProto.DataType numbers.
pub type otter_dtype = c_int;
pub const OTTER_DTYPE_UNDEFINED: otter_dtype = 0;
pub const OTTER_DTYPE_FLOAT32: otter_dtype = 1;
pub const OTTER_DTYPE_UINT8: otter_dtype = 2;
pub const OTTER_DTYPE_INT8: otter_dtype = 3;
pub const OTTER_DTYPE_INT32: otter_dtype = 6;
pub const OTTER_DTYPE_INT64: otter_dtype = 7;
pub const OTTER_DTYPE_BOOL: otter_dtype = 9;
pub const OTTER_DTYPE_FLOAT16: otter_dtype = 10;
pub const OTTER_DTYPE_FLOAT64: otter_dtype = 11;
pub const OTTER_DTYPE_BFLOAT16: otter_dtype = 16;

/// `otter_device_type`: DLPack's DLDeviceType numbers.
pub type otter_device_type = c_int;
pub const OTTER_DEVICE_CPU: otter_device_type = 1;
pub const OTTER_DEVICE_CUDA: otter_device_type = 2;

/// A non-owning view of a dense row-major tensor (frozen layout: 32 bytes on 64-bit targets).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct otter_tensor_view {
    pub data: *mut c_void,
    pub dtype: i32,
    pub ndim: i32,
    pub shape: *const i64,
    pub device_type: i32,
    pub device_id: i32,
}

/// Opaque handles.
#[repr(C)]
pub struct otter_options {
    _private: [u8; 0],
}
#[repr(C)]
pub struct otter_session {
    _private: [u8; 0],
}
#[repr(C)]
pub struct otter_tensor_list {
    _private: [u8; 0],
}

extern "C" {
    // ---- library ----
    pub fn otter_api_version() -> u32;
    pub fn otter_version() -> *const c_char;
    pub fn otter_last_error() -> *const c_char;
    pub fn otter_status_name(status: otter_status) -> *const c_char;
    pub fn otter_dtype_size(dtype: otter_dtype) -> usize;

    // ---- options ----
    pub fn otter_options_create(out: *mut *mut otter_options) -> otter_status;
    pub fn otter_options_free(options: *mut otter_options);
    pub fn otter_options_set(options: *mut otter_options, key: *const c_char, value: *const c_char) -> otter_status;
    pub fn otter_options_set_double(options: *mut otter_options, key: *const c_char, value: c_double) -> otter_status;
    pub fn otter_options_set_int(options: *mut otter_options, key: *const c_char, value: i64) -> otter_status;
    pub fn otter_options_get(options: *const otter_options, key: *const c_char, out_value: *mut *const c_char) -> otter_status;

    // ---- sessions ----
    pub fn otter_session_create_from_file(
        model_path: *const c_char,
        options: *const otter_options,
        out: *mut *mut otter_session,
    ) -> otter_status;
    pub fn otter_session_create_from_buffer(
        model_data: *const c_void,
        model_size: usize,
        base_dir: *const c_char,
        options: *const otter_options,
        out: *mut *mut otter_session,
    ) -> otter_status;
    pub fn otter_session_free(session: *mut otter_session);
    pub fn otter_session_device(session: *const otter_session, out_device: *mut *const c_char) -> otter_status;
    pub fn otter_session_compute(session: *const otter_session, out_text: *mut *const c_char) -> otter_status;
    pub fn otter_session_input_count(session: *const otter_session, out_count: *mut usize) -> otter_status;
    pub fn otter_session_input_info(
        session: *const otter_session,
        index: usize,
        out_name: *mut *const c_char,
        out_dtype: *mut otter_dtype,
        out_ndim: *mut i32,
        out_shape: *mut *const i64,
    ) -> otter_status;
    pub fn otter_session_output_count(session: *const otter_session, out_count: *mut usize) -> otter_status;
    pub fn otter_session_output_info(
        session: *const otter_session,
        index: usize,
        out_name: *mut *const c_char,
        out_dtype: *mut otter_dtype,
        out_ndim: *mut i32,
        out_shape: *mut *const i64,
    ) -> otter_status;
    pub fn otter_session_parameter_count(session: *const otter_session, out_count: *mut usize) -> otter_status;
    pub fn otter_session_parameter_info(
        session: *const otter_session,
        index: usize,
        out_name: *mut *const c_char,
        out_dtype: *mut otter_dtype,
        out_ndim: *mut i32,
        out_shape: *mut *const i64,
    ) -> otter_status;
    pub fn otter_session_train_step(
        session: *mut otter_session,
        num_inputs: usize,
        names: *const *const c_char,
        inputs: *const otter_tensor_view,
        out_loss: *mut c_double,
    ) -> otter_status;
    pub fn otter_session_eval_step(
        session: *mut otter_session,
        num_inputs: usize,
        names: *const *const c_char,
        inputs: *const otter_tensor_view,
        out_outputs: *mut *mut otter_tensor_list,
        out_loss: *mut c_double,
        out_has_loss: *mut c_int,
    ) -> otter_status;
    pub fn otter_session_get_learning_rate(session: *const otter_session, out_lr: *mut c_double) -> otter_status;
    pub fn otter_session_set_learning_rate(session: *mut otter_session, lr: c_double) -> otter_status;
    pub fn otter_session_get_parameter(
        session: *const otter_session,
        name: *const c_char,
        buffer: *mut c_void,
        buffer_bytes: usize,
    ) -> otter_status;
    pub fn otter_session_set_parameter(
        session: *mut otter_session,
        name: *const c_char,
        value: *const otter_tensor_view,
    ) -> otter_status;
    pub fn otter_session_get_stat(session: *const otter_session, key: *const c_char, out_value: *mut c_double) -> otter_status;
    pub fn otter_session_log_scalar(session: *mut otter_session, tag: *const c_char, value: c_double) -> otter_status;
    pub fn otter_session_save_checkpoint(session: *const otter_session, path: *const c_char) -> otter_status;
    pub fn otter_session_load_checkpoint(session: *mut otter_session, path: *const c_char) -> otter_status;
    pub fn otter_session_export(session: *const otter_session, path: *const c_char) -> otter_status;
    pub fn otter_session_initializer_count(session: *const otter_session, out_count: *mut usize) -> otter_status;
    pub fn otter_session_initializer_info(
        session: *const otter_session,
        index: usize,
        out_name: *mut *const c_char,
        out_trained: *mut c_int,
        out_reason: *mut *const c_char,
    ) -> otter_status;
    pub fn otter_session_note_count(session: *const otter_session, out_count: *mut usize) -> otter_status;
    pub fn otter_session_note(session: *const otter_session, index: usize, out_text: *mut *const c_char) -> otter_status;
    pub fn otter_session_set_metadata(session: *mut otter_session, key: *const c_char, value: *const c_char) -> otter_status;
    pub fn otter_session_get_metadata(
        session: *const otter_session,
        key: *const c_char,
        out_value: *mut *const c_char,
    ) -> otter_status;
    pub fn otter_session_node_count(session: *const otter_session, out_count: *mut usize) -> otter_status;
    pub fn otter_session_node_info(
        session: *const otter_session,
        index: usize,
        out_name: *mut *const c_char,
        out_op_type: *mut *const c_char,
        out_compute_dtype: *mut *const c_char,
    ) -> otter_status;
    pub fn otter_session_node_precision(
        session: *const otter_session,
        index: usize,
        out_reason: *mut *const c_char,
    ) -> otter_status;
    pub fn otter_checkpoint_export(
        checkpoint_path: *const c_char,
        model_path: *const c_char,
        out_path: *const c_char,
    ) -> otter_status;

    // ---- tensor lists ----
    pub fn otter_tensor_list_size(list: *const otter_tensor_list, out_size: *mut usize) -> otter_status;
    pub fn otter_tensor_list_get(
        list: *const otter_tensor_list,
        index: usize,
        out_name: *mut *const c_char,
        out_view: *mut otter_tensor_view,
    ) -> otter_status;
    pub fn otter_tensor_list_free(list: *mut otter_tensor_list);

    // ---- NumPy files ----
    pub fn otter_npz_load(path: *const c_char, out_list: *mut *mut otter_tensor_list) -> otter_status;
    pub fn otter_npz_save(
        path: *const c_char,
        num: usize,
        names: *const *const c_char,
        tensors: *const otter_tensor_view,
    ) -> otter_status;
}
