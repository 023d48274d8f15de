//! Otter from Rust: train ONNX models through libotter's stable C ABI.
//!
//! [`ffi`] declares the C functions of `otter.h` as they are; the rest of this crate is a safe
//! wrapper over them:
//! - [`Options`] (key/value training options) and [`Session`] (a training session), both freed on
//!   `Drop`;
//! - [`TensorView`], a borrowed view over a slice with a shape, passed to the library without a
//!   copy; [`TensorList`] owns tensors the library returns (eval outputs, `.npz` contents) and
//!   lends [`Tensor`] views of them;
//! - every failing call is an [`Error`] carrying the C status ([`Status`]) and the library's message.
//!
//! Threads (otter.h, "Threads"): a session may be used from one thread at a time. [`Session`],
//! [`Options`] and [`TensorList`] are therefore `Send` (move them to another thread) but not `Sync`
//! (no shared use from several threads at once); the borrow checker then rules out the
//! `OTTER_ERROR_BUSY` case entirely.
//!
//! ```no_run
//! use otter::{Options, Session, TensorView};
//! let opts = Options::new()?.set("loss", "cross_entropy")?.set("optimizer", "adamw")?.set_f64("lr", 3e-3)?;
//! let mut s = Session::from_file("mlp.onnx", &opts)?;
//! let (x, y) = (vec![0f32; 32 * 64], vec![0i64; 32]);
//! let loss = s.train_step(&[("x", TensorView::new(&x, &[32, 64])?), ("label", TensorView::new(&y, &[32])?)])?;
//! s.export("trained.onnx")?;
//! # Ok::<(), otter::Error>(())
//! ```
pub mod ffi;

use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::path::Path;
use std::ptr;

// ---- errors ----------------------------------------------------------------------------------

/// The status of a failed call (`otter_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InvalidArgument,
    NotFound,
    InvalidModel,
    Unsupported,
    Io,
    OutOfMemory,
    WrongState,
    Internal,
    NonFinite,
    Busy,
    /// A data-parallel run cannot continue (another rank failed, or the ranks disagree).
    Distributed,
    /// A status this crate does not know (a newer library).
    Other(i32),
}

impl Status {
    fn from_code(code: ffi::otter_status) -> Status {
        match code {
            ffi::OTTER_ERROR_INVALID_ARGUMENT => Status::InvalidArgument,
            ffi::OTTER_ERROR_NOT_FOUND => Status::NotFound,
            ffi::OTTER_ERROR_INVALID_MODEL => Status::InvalidModel,
            ffi::OTTER_ERROR_UNSUPPORTED => Status::Unsupported,
            ffi::OTTER_ERROR_IO => Status::Io,
            ffi::OTTER_ERROR_OUT_OF_MEMORY => Status::OutOfMemory,
            ffi::OTTER_ERROR_WRONG_STATE => Status::WrongState,
            ffi::OTTER_ERROR_INTERNAL => Status::Internal,
            ffi::OTTER_ERROR_NON_FINITE => Status::NonFinite,
            ffi::OTTER_ERROR_BUSY => Status::Busy,
            ffi::OTTER_ERROR_DISTRIBUTED => Status::Distributed,
            other => Status::Other(other),
        }
    }

    /// The C status code.
    pub fn code(self) -> i32 {
        match self {
            Status::InvalidArgument => ffi::OTTER_ERROR_INVALID_ARGUMENT,
            Status::NotFound => ffi::OTTER_ERROR_NOT_FOUND,
            Status::InvalidModel => ffi::OTTER_ERROR_INVALID_MODEL,
            Status::Unsupported => ffi::OTTER_ERROR_UNSUPPORTED,
            Status::Io => ffi::OTTER_ERROR_IO,
            Status::OutOfMemory => ffi::OTTER_ERROR_OUT_OF_MEMORY,
            Status::WrongState => ffi::OTTER_ERROR_WRONG_STATE,
            Status::Internal => ffi::OTTER_ERROR_INTERNAL,
            Status::NonFinite => ffi::OTTER_ERROR_NON_FINITE,
            Status::Busy => ffi::OTTER_ERROR_BUSY,
            Status::Distributed => ffi::OTTER_ERROR_DISTRIBUTED,
            Status::Other(c) => c,
        }
    }

    /// The constant's name, "OTTER_ERROR_NOT_FOUND", ... (from the library).
    pub fn name(self) -> String {
        unsafe { cstr(ffi::otter_status_name(self.code())) }
    }
}

/// A failed Otter call: the C status and the library's message (which names the function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Turns a status into a Result, reading the thread's last error message on failure.
fn check(code: ffi::otter_status) -> Result<()> {
    if code == ffi::OTTER_OK {
        return Ok(());
    }
    let message = unsafe { cstr(ffi::otter_last_error()) };
    Err(Error::new(Status::from_code(code), message))
}

/// A copy of a C string returned by the library ("" for NULL).
unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn c_string(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(Status::InvalidArgument, format!("{what} '{s}' contains a NUL byte")))
}

fn c_path(p: &Path, what: &str) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::new(Status::InvalidArgument, format!("{what} '{}' contains a NUL byte", p.display())))
}

/// The library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> String {
    unsafe { cstr(ffi::otter_version()) }
}

/// The library's OTTER_API_VERSION (compatible when `api_version() / 1000 == ffi::OTTER_API_VERSION / 1000`).
pub fn api_version() -> u32 {
    unsafe { ffi::otter_api_version() }
}

// ---- element types ---------------------------------------------------------------------------

/// Element types of Otter tensors (`otter_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    Float32,
    UInt8,
    Int8,
    Int32,
    Int64,
    Bool,
    Float16,
    Float64,
    BFloat16,
}

impl DType {
    pub fn code(self) -> ffi::otter_dtype {
        match self {
            DType::Float32 => ffi::OTTER_DTYPE_FLOAT32,
            DType::UInt8 => ffi::OTTER_DTYPE_UINT8,
            DType::Int8 => ffi::OTTER_DTYPE_INT8,
            DType::Int32 => ffi::OTTER_DTYPE_INT32,
            DType::Int64 => ffi::OTTER_DTYPE_INT64,
            DType::Bool => ffi::OTTER_DTYPE_BOOL,
            DType::Float16 => ffi::OTTER_DTYPE_FLOAT16,
            DType::Float64 => ffi::OTTER_DTYPE_FLOAT64,
            DType::BFloat16 => ffi::OTTER_DTYPE_BFLOAT16,
        }
    }

    pub fn from_code(code: ffi::otter_dtype) -> Option<DType> {
        Some(match code {
            ffi::OTTER_DTYPE_FLOAT32 => DType::Float32,
            ffi::OTTER_DTYPE_UINT8 => DType::UInt8,
            ffi::OTTER_DTYPE_INT8 => DType::Int8,
            ffi::OTTER_DTYPE_INT32 => DType::Int32,
            ffi::OTTER_DTYPE_INT64 => DType::Int64,
            ffi::OTTER_DTYPE_BOOL => DType::Bool,
            ffi::OTTER_DTYPE_FLOAT16 => DType::Float16,
            ffi::OTTER_DTYPE_FLOAT64 => DType::Float64,
            ffi::OTTER_DTYPE_BFLOAT16 => DType::BFloat16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        unsafe { ffi::otter_dtype_size(self.code()) }
    }
}

/// Rust element types with an Otter dtype. FP16/BF16 data is passed as `u16` bit patterns with an
/// explicit dtype ([`TensorView::with_dtype`]).
pub trait Element: Copy + 'static {
    const DTYPE: DType;
}
impl Element for f32 {
    const DTYPE: DType = DType::Float32;
}
impl Element for f64 {
    const DTYPE: DType = DType::Float64;
}
impl Element for i64 {
    const DTYPE: DType = DType::Int64;
}
impl Element for i32 {
    const DTYPE: DType = DType::Int32;
}
impl Element for i8 {
    const DTYPE: DType = DType::Int8;
}
impl Element for u8 {
    const DTYPE: DType = DType::UInt8;
}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
}

// ---- tensor views ----------------------------------------------------------------------------

/// A borrowed, dense row-major CPU tensor: a slice and a shape. The library reads it in place
/// during the call it is passed to (no copy) and never writes it.
#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    data: *const u8,
    dtype: DType,
    shape: Vec<i64>,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> TensorView<'a> {
    /// A view of `data` with `shape`; the element count must match the shape.
    pub fn new<T: Element>(data: &'a [T], shape: &[i64]) -> Result<TensorView<'a>> {
        Self::checked(data.as_ptr() as *const u8, data.len(), T::DTYPE, shape)
    }

    /// A view of 16-bit data with dtype Float16 or BFloat16 (or any dtype of 2 bytes).
    pub fn with_dtype(data: &'a [u16], dtype: DType, shape: &[i64]) -> Result<TensorView<'a>> {
        if dtype.size() != 2 {
            return Err(Error::new(Status::InvalidArgument, format!("{dtype:?} is not a 16-bit dtype")));
        }
        Self::checked(data.as_ptr() as *const u8, data.len(), dtype, shape)
    }

    fn checked(data: *const u8, len: usize, dtype: DType, shape: &[i64]) -> Result<TensorView<'a>> {
        let mut count: i64 = 1;
        for &d in shape {
            if d < 0 {
                return Err(Error::new(Status::InvalidArgument, format!("negative dimension {d} in shape {shape:?}")));
            }
            count = count
                .checked_mul(d)
                .ok_or_else(|| Error::new(Status::InvalidArgument, format!("shape {shape:?} overflows")))?;
        }
        if count as u64 != len as u64 {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("shape {shape:?} holds {count} elements but the slice has {len}"),
            ));
        }
        Ok(TensorView { data, dtype, shape: shape.to_vec(), _borrow: PhantomData })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    fn raw(&self) -> ffi::otter_tensor_view {
        ffi::otter_tensor_view {
            data: self.data as *mut _,
            dtype: self.dtype.code(),
            ndim: self.shape.len() as i32,
            shape: if self.shape.is_empty() { ptr::null() } else { self.shape.as_ptr() },
            device_type: ffi::OTTER_DEVICE_CPU,
            device_id: 0,
        }
    }
}

/// Names and C views of named inputs, kept alive for one call.
struct Feeds {
    _names: Vec<CString>,
    name_ptrs: Vec<*const c_char>,
    views: Vec<ffi::otter_tensor_view>,
}

impl Feeds {
    fn new(inputs: &[(&str, TensorView<'_>)]) -> Result<Feeds> {
        let names = inputs.iter().map(|(n, _)| c_string(n, "input name")).collect::<Result<Vec<_>>>()?;
        let name_ptrs = names.iter().map(|n| n.as_ptr()).collect();
        let views = inputs.iter().map(|(_, v)| v.raw()).collect();
        Ok(Feeds { _names: names, name_ptrs, views })
    }
}

/// A tensor owned by a [`TensorList`]: name, dtype, shape and a typed slice of its data.
#[derive(Debug, Clone)]
pub struct Tensor<'a> {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
    data: *const u8,
    count: usize,
    _list: PhantomData<&'a TensorList>,
}

impl<'a> Tensor<'a> {
    /// The elements, when `T` is the tensor's dtype (an InvalidArgument error otherwise).
    pub fn data<T: Element>(&self) -> Result<&'a [T]> {
        if T::DTYPE != self.dtype {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("tensor '{}' is {:?}, not {:?}", self.name, self.dtype, T::DTYPE),
            ));
        }
        if self.count == 0 {
            return Ok(&[]);
        }
        Ok(unsafe { std::slice::from_raw_parts(self.data as *const T, self.count) })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A view of this tensor to feed back into a session (e.g. rows of a loaded `.npz`).
    pub fn view(&self) -> Result<TensorView<'a>> {
        TensorView::checked(self.data, self.count, self.dtype, &self.shape)
    }

    /// A view of rows `begin..end` of the first dimension.
    pub fn rows(&self, begin: usize, end: usize) -> Result<TensorView<'a>> {
        let n = *self.shape.first().ok_or_else(|| Error::new(Status::InvalidArgument, "a scalar has no rows"))? as usize;
        if begin > end || end > n {
            return Err(Error::new(Status::InvalidArgument, format!("rows {begin}..{end} out of range (0..{n})")));
        }
        let row = if n == 0 { 0 } else { self.count / n };
        let mut shape = self.shape.clone();
        shape[0] = (end - begin) as i64;
        let offset = begin * row * self.dtype.size();
        TensorView::checked(unsafe { self.data.add(offset) }, (end - begin) * row, self.dtype, &shape)
    }
}

/// Tensors owned by the library (eval outputs, `.npz` contents), freed on `Drop`.
pub struct TensorList {
    handle: *mut ffi::otter_tensor_list,
}

// One owner at a time may use it from any thread (otter.h: lists are plain data).
unsafe impl Send for TensorList {}

impl TensorList {
    pub fn len(&self) -> usize {
        let mut n = 0usize;
        check(unsafe { ffi::otter_tensor_list_size(self.handle, &mut n) }).map(|_| n).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `index`.
    pub fn get(&self, index: usize) -> Result<Tensor<'_>> {
        let mut name: *const c_char = ptr::null();
        let mut v = ffi::otter_tensor_view {
            data: ptr::null_mut(),
            dtype: 0,
            ndim: 0,
            shape: ptr::null(),
            device_type: 0,
            device_id: 0,
        };
        check(unsafe { ffi::otter_tensor_list_get(self.handle, index, &mut name, &mut v) })?;
        let shape: Vec<i64> =
            if v.ndim == 0 { Vec::new() } else { unsafe { std::slice::from_raw_parts(v.shape, v.ndim as usize) }.to_vec() };
        let dtype = DType::from_code(v.dtype)
            .ok_or_else(|| Error::new(Status::Unsupported, format!("unknown dtype code {}", v.dtype)))?;
        Ok(Tensor {
            name: unsafe { cstr(name) },
            dtype,
            count: shape.iter().product::<i64>() as usize,
            shape,
            data: v.data as *const u8,
            _list: PhantomData,
        })
    }

    /// The entry named `name`.
    pub fn by_name(&self, name: &str) -> Result<Tensor<'_>> {
        for i in 0..self.len() {
            let t = self.get(i)?;
            if t.name == name {
                return Ok(t);
            }
        }
        Err(Error::new(Status::NotFound, format!("no tensor named '{name}'")))
    }

    /// Reads every array of a NumPy `.npz` file.
    pub fn load_npz(path: impl AsRef<Path>) -> Result<TensorList> {
        let p = c_path(path.as_ref(), "path")?;
        let mut handle = ptr::null_mut();
        check(unsafe { ffi::otter_npz_load(p.as_ptr(), &mut handle) })?;
        Ok(TensorList { handle })
    }
}

impl Drop for TensorList {
    fn drop(&mut self) {
        unsafe { ffi::otter_tensor_list_free(self.handle) }
    }
}

/// Writes named CPU tensors to a NumPy `.npz` file.
pub fn save_npz(path: impl AsRef<Path>, tensors: &[(&str, TensorView<'_>)]) -> Result<()> {
    let p = c_path(path.as_ref(), "path")?;
    let feeds = Feeds::new(tensors)?;
    check(unsafe { ffi::otter_npz_save(p.as_ptr(), feeds.views.len(), feeds.name_ptrs.as_ptr(), feeds.views.as_ptr()) })
}

// ---- options ---------------------------------------------------------------------------------

/// Training options by key (see `otter_options_set` in otter.h for every key), freed on `Drop`.
/// Setters consume and return the options so they chain.
pub struct Options {
    handle: *mut ffi::otter_options,
}

unsafe impl Send for Options {}

impl Options {
    pub fn new() -> Result<Options> {
        let mut handle = ptr::null_mut();
        check(unsafe { ffi::otter_options_create(&mut handle) })?;
        Ok(Options { handle })
    }

    /// Sets `key` to `value`: NotFound for an unknown key, InvalidArgument for a bad value.
    pub fn set(self, key: &str, value: &str) -> Result<Options> {
        let (k, v) = (c_string(key, "option key")?, c_string(value, "option value")?);
        check(unsafe { ffi::otter_options_set(self.handle, k.as_ptr(), v.as_ptr()) })?;
        Ok(self)
    }
    pub fn set_f64(self, key: &str, value: f64) -> Result<Options> {
        let k = c_string(key, "option key")?;
        check(unsafe { ffi::otter_options_set_double(self.handle, k.as_ptr(), value) })?;
        Ok(self)
    }
    pub fn set_i64(self, key: &str, value: i64) -> Result<Options> {
        let k = c_string(key, "option key")?;
        check(unsafe { ffi::otter_options_set_int(self.handle, k.as_ptr(), value) })?;
        Ok(self)
    }
    /// The value of `key` (NotFound when unset or unknown).
    pub fn get(&self, key: &str) -> Result<String> {
        let k = c_string(key, "option key")?;
        let mut out: *const c_char = ptr::null();
        check(unsafe { ffi::otter_options_get(self.handle, k.as_ptr(), &mut out) })?;
        Ok(unsafe { cstr(out) })
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        unsafe { ffi::otter_options_free(self.handle) }
    }
}

// ---- sessions --------------------------------------------------------------------------------

/// Name, dtype and shape (-1 for a symbolic dimension) of a session input, output or parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Option<DType>,
    pub shape: Vec<i64>,
}

/// What `eval_step` returns: the model's outputs and, when the labels were given, the loss.
pub struct EvalOutput {
    pub outputs: TensorList,
    pub loss: Option<f64>,
}

/// A training session (see otter.h, "sessions"), freed on `Drop`. `Send`, not `Sync`: one thread
/// at a time, as the C API requires. Sharing one between threads does not compile:
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<otter::Session>();
/// ```
pub struct Session {
    handle: *mut ffi::otter_session,
}

unsafe impl Send for Session {}

type InfoFn = unsafe extern "C" fn(
    *const ffi::otter_session,
    usize,
    *mut *const c_char,
    *mut ffi::otter_dtype,
    *mut i32,
    *mut *const i64,
) -> ffi::otter_status;
type CountFn = unsafe extern "C" fn(*const ffi::otter_session, *mut usize) -> ffi::otter_status;

impl Session {
    /// Loads an ONNX model and prepares training with `options`.
    pub fn from_file(model: impl AsRef<Path>, options: &Options) -> Result<Session> {
        let p = c_path(model.as_ref(), "model path")?;
        let mut handle = ptr::null_mut();
        check(unsafe { ffi::otter_session_create_from_file(p.as_ptr(), options.handle, &mut handle) })?;
        Ok(Session { handle })
    }

    /// The same from a serialized ModelProto; external data is resolved against `base_dir`.
    pub fn from_bytes(model: &[u8], base_dir: Option<&Path>, options: &Options) -> Result<Session> {
        let base = base_dir.map(|b| c_path(b, "base_dir")).transpose()?;
        let mut handle = ptr::null_mut();
        check(unsafe {
            ffi::otter_session_create_from_buffer(
                model.as_ptr() as *const _,
                model.len(),
                base.as_ref().map_or(ptr::null(), |b| b.as_ptr()),
                options.handle,
                &mut handle,
            )
        })?;
        Ok(Session { handle })
    }

    /// "cpu" or "cuda:N".
    pub fn device(&self) -> Result<String> {
        let mut out: *const c_char = ptr::null();
        check(unsafe { ffi::otter_session_device(self.handle, &mut out) })?;
        Ok(unsafe { cstr(out) })
    }

    /// One line saying what computes on the device (libraries, native BF16, conversions).
    pub fn compute(&self) -> Result<String> {
        let mut out: *const c_char = ptr::null();
        check(unsafe { ffi::otter_session_compute(self.handle, &mut out) })?;
        Ok(unsafe { cstr(out) })
    }

    fn infos(&self, count: CountFn, info: InfoFn) -> Result<Vec<TensorInfo>> {
        let mut n = 0usize;
        check(unsafe { count(self.handle, &mut n) })?;
        (0..n)
            .map(|i| {
                let (mut name, mut dtype, mut ndim, mut shape) = (ptr::null(), 0, 0i32, ptr::null());
                check(unsafe { info(self.handle, i, &mut name, &mut dtype, &mut ndim, &mut shape) })?;
                let dims =
                    if ndim == 0 { Vec::new() } else { unsafe { std::slice::from_raw_parts(shape, ndim as usize) }.to_vec() };
                Ok(TensorInfo { name: unsafe { cstr(name) }, dtype: DType::from_code(dtype), shape: dims })
            })
            .collect()
    }

    /// Inputs a training step needs (model inputs plus the label).
    pub fn inputs(&self) -> Result<Vec<TensorInfo>> {
        self.infos(ffi::otter_session_input_count, ffi::otter_session_input_info)
    }
    pub fn outputs(&self) -> Result<Vec<TensorInfo>> {
        self.infos(ffi::otter_session_output_count, ffi::otter_session_output_info)
    }
    /// The trainable parameters.
    pub fn parameters(&self) -> Result<Vec<TensorInfo>> {
        self.infos(ffi::otter_session_parameter_count, ffi::otter_session_parameter_info)
    }

    /// One training micro-batch; returns its loss. Inputs are read in place.
    pub fn train_step(&mut self, inputs: &[(&str, TensorView<'_>)]) -> Result<f64> {
        let feeds = Feeds::new(inputs)?;
        let mut loss = 0f64;
        check(unsafe {
            ffi::otter_session_train_step(self.handle, feeds.views.len(), feeds.name_ptrs.as_ptr(), feeds.views.as_ptr(), &mut loss)
        })?;
        Ok(loss)
    }

    /// Forward pass in evaluation mode; the loss too when the labels are among the inputs.
    pub fn eval_step(&mut self, inputs: &[(&str, TensorView<'_>)]) -> Result<EvalOutput> {
        let feeds = Feeds::new(inputs)?;
        let (mut list, mut loss, mut has_loss) = (ptr::null_mut(), 0f64, 0 as c_int);
        check(unsafe {
            ffi::otter_session_eval_step(
                self.handle,
                feeds.views.len(),
                feeds.name_ptrs.as_ptr(),
                feeds.views.as_ptr(),
                &mut list,
                &mut loss,
                &mut has_loss,
            )
        })?;
        Ok(EvalOutput { outputs: TensorList { handle: list }, loss: if has_loss != 0 { Some(loss) } else { None } })
    }

    /// A statistic by key: step, micro_step, last_loss, learning_rate, grad_norm, loss_scale, ...
    pub fn stat(&self, key: &str) -> Result<f64> {
        let k = c_string(key, "statistic")?;
        let mut v = 0f64;
        check(unsafe { ffi::otter_session_get_stat(self.handle, k.as_ptr(), &mut v) })?;
        Ok(v)
    }

    pub fn learning_rate(&self) -> Result<f64> {
        let mut v = 0f64;
        check(unsafe { ffi::otter_session_get_learning_rate(self.handle, &mut v) })?;
        Ok(v)
    }
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        check(unsafe { ffi::otter_session_set_learning_rate(self.handle, lr) })
    }

    /// A copy of parameter `name` (its FP32 master).
    pub fn parameter(&self, name: &str) -> Result<Vec<f32>> {
        let info = self
            .parameters()?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::new(Status::NotFound, format!("'{name}' is not a trainable parameter")))?;
        let mut out = vec![0f32; info.shape.iter().product::<i64>() as usize];
        let k = c_string(name, "parameter")?;
        check(unsafe {
            ffi::otter_session_get_parameter(self.handle, k.as_ptr(), out.as_mut_ptr() as *mut _, out.len() * 4)
        })?;
        Ok(out)
    }
    /// Replaces parameter `name` (same dtype and shape).
    pub fn set_parameter(&mut self, name: &str, value: &TensorView<'_>) -> Result<()> {
        let k = c_string(name, "parameter")?;
        let v = value.raw();
        check(unsafe { ffi::otter_session_set_parameter(self.handle, k.as_ptr(), &v) })
    }

    /// Appends a scalar to the session's TensorBoard log (option `tensorboard`).
    pub fn log_scalar(&mut self, tag: &str, value: f64) -> Result<()> {
        let t = c_string(tag, "tag")?;
        check(unsafe { ffi::otter_session_log_scalar(self.handle, t.as_ptr(), value) })
    }

    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = c_path(path.as_ref(), "path")?;
        check(unsafe { ffi::otter_session_save_checkpoint(self.handle, p.as_ptr()) })
    }
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let p = c_path(path.as_ref(), "path")?;
        check(unsafe { ffi::otter_session_load_checkpoint(self.handle, p.as_ptr()) })
    }
    /// Writes the original model with the trained weights.
    pub fn export(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = c_path(path.as_ref(), "path")?;
        check(unsafe { ffi::otter_session_export(self.handle, p.as_ptr()) })
    }

    /// Warnings about the session's set-up.
    pub fn notes(&self) -> Result<Vec<String>> {
        let mut n = 0usize;
        check(unsafe { ffi::otter_session_note_count(self.handle, &mut n) })?;
        (0..n)
            .map(|i| {
                let mut t: *const c_char = ptr::null();
                check(unsafe { ffi::otter_session_note(self.handle, i, &mut t) })?;
                Ok(unsafe { cstr(t) })
            })
            .collect()
    }

    pub fn set_metadata(&mut self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (c_string(key, "key")?, c_string(value, "value")?);
        check(unsafe { ffi::otter_session_set_metadata(self.handle, k.as_ptr(), v.as_ptr()) })
    }
    pub fn metadata(&self, key: &str) -> Result<String> {
        let k = c_string(key, "key")?;
        let mut out: *const c_char = ptr::null();
        check(unsafe { ffi::otter_session_get_metadata(self.handle, k.as_ptr(), &mut out) })?;
        Ok(unsafe { cstr(out) })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        unsafe { ffi::otter_session_free(self.handle) }
    }
}

/// Writes `model` with the parameters of `checkpoint` to `out` without a session.
pub fn checkpoint_export(checkpoint: impl AsRef<Path>, model: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<()> {
    let (c, m, o) = (c_path(checkpoint.as_ref(), "checkpoint")?, c_path(model.as_ref(), "model")?, c_path(out.as_ref(), "out")?);
    check(unsafe { ffi::otter_checkpoint_export(c.as_ptr(), m.as_ptr(), o.as_ptr()) })
}
