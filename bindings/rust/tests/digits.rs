//! The safe API end to end on the bundled digits MLP (examples/digits): train a few epochs to
//! >= 95% test accuracy, evaluate, export and load the export again; error paths carry the C
//! status and message; Session is Send (moved to another thread).
use otter::{DType, Options, Session, Status, TensorList, TensorView};
use std::path::PathBuf;

fn digits(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits").join(file)
}

fn options() -> otter::Result<Options> {
    Options::new()?.set("loss", "cross_entropy")?.set("optimizer", "adamw")?.set_f64("lr", 1e-2)?.set_i64("seed", 1)
}

/// Fraction of test rows whose argmax over the logits is the label.
fn accuracy(s: &mut Session, test: &TensorList) -> otter::Result<f64> {
    let (x, y) = (test.by_name("x")?, test.by_name("y")?);
    let out = s.eval_step(&[("x", x.view()?)])?;
    let logits = out.outputs.get(0)?;
    let (p, labels) = (logits.data::<f32>()?, y.data::<i64>()?);
    let classes = logits.shape[1] as usize;
    let correct = labels
        .iter()
        .enumerate()
        .filter(|(i, &l)| {
            let row = &p[i * classes..(i + 1) * classes];
            let best = (0..classes).max_by(|&a, &b| row[a].partial_cmp(&row[b]).unwrap()).unwrap();
            best as i64 == l
        })
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

#[test]
fn trains_digits_to_95_percent_and_exports() -> otter::Result<()> {
    assert_eq!(otter::api_version() / 1000, otter::ffi::OTTER_API_VERSION / 1000);
    let train = TensorList::load_npz(digits("train.npz"))?;
    let test = TensorList::load_npz(digits("test.npz"))?;
    let (x, y) = (train.by_name("x")?, train.by_name("y")?);
    assert_eq!((x.dtype, y.dtype), (DType::Float32, DType::Int64));
    let rows = x.shape[0] as usize;

    let mut s = Session::from_file(digits("mlp.onnx"), &options()?)?;
    assert_eq!(s.device()?, "cpu");
    let names: Vec<String> = s.inputs()?.into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["x", "label"]);
    let before = accuracy(&mut s, &test)?;
    let mut last = f64::NAN;
    for _epoch in 0..8 {
        for b in (0..rows).step_by(32) {
            let e = (b + 32).min(rows);
            last = s.train_step(&[("x", x.rows(b, e)?), ("label", y.rows(b, e)?)])?;
        }
    }
    let after = accuracy(&mut s, &test)?;
    println!("accuracy {before:.3} -> {after:.3}, last loss {last:.4}, steps {}", s.stat("step")?);
    assert!(after >= 0.95, "test accuracy {after} < 0.95");
    assert!(last.is_finite() && last < 0.5);

    // The loss on the test set through eval_step with labels.
    let (tx, ty) = (test.by_name("x")?, test.by_name("y")?);
    let eval = s.eval_step(&[("x", tx.view()?), ("label", ty.view()?)])?;
    assert!(eval.loss.unwrap() < 0.3);

    // Export, then the exported model starts where training ended.
    let dir = std::env::temp_dir().join(format!("otter-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("trained.onnx");
    s.export(&out)?;
    let w = s.parameter("fc1.weight")?;
    let mut again = Session::from_file(&out, &options()?)?;
    assert_eq!(again.parameter("fc1.weight")?, w);
    assert!((accuracy(&mut again, &test)? - after).abs() < 1e-9);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn errors_carry_status_and_message() -> otter::Result<()> {
    let e = Options::new()?.set("optimizer", "rmsprop").err().expect("a bad value fails");
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("rmsprop"), "{}", e.message);
    assert!(e.to_string().starts_with("OTTER_ERROR_INVALID_ARGUMENT: "), "{e}");

    let e = Options::new()?.set("no_such_key", "1").err().unwrap();
    assert_eq!(e.status, Status::NotFound);

    let e = Session::from_file(digits("missing.onnx"), &options()?).err().unwrap();
    assert_eq!(e.status, Status::NotFound);
    assert!(e.message.contains("missing.onnx"), "{}", e.message);

    let mut s = Session::from_file(digits("mlp.onnx"), &options()?)?;
    let x = vec![0f32; 2 * 63];
    let y = vec![0i64; 2];
    let e = s
        .train_step(&[("x", TensorView::new(&x, &[2, 63])?), ("label", TensorView::new(&y, &[2])?)])
        .err()
        .unwrap();
    assert_eq!(e.status, Status::InvalidArgument, "{e}");
    // A slice that does not fill its shape never reaches the library.
    assert_eq!(TensorView::new(&x, &[2, 64]).err().unwrap().status, Status::InvalidArgument);
    // A label out of range: the step fails and the session is unchanged and usable.
    let x = vec![0f32; 2 * 64];
    let bad = vec![0i64, 99];
    let e = s.train_step(&[("x", TensorView::new(&x, &[2, 64])?), ("label", TensorView::new(&bad, &[2])?)]).err().unwrap();
    assert_eq!(e.status, Status::InvalidArgument, "{e}");
    assert_eq!(s.stat("step")?, 0.0);
    let e = s.log_scalar("val/loss", 1.0).err().unwrap();
    assert_eq!(e.status, Status::WrongState);
    Ok(())
}

#[test]
fn session_moves_to_another_thread() -> otter::Result<()> {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
    assert_send::<Options>();
    assert_send::<TensorList>();
    let s = Session::from_file(digits("mlp.onnx"), &options()?)?;
    let handle = std::thread::spawn(move || {
        let mut s = s;
        let x = vec![0.5f32; 4 * 64];
        let y = vec![1i64; 4];
        s.train_step(&[("x", TensorView::new(&x, &[4, 64])?), ("label", TensorView::new(&y, &[4])?)])
    });
    assert!(handle.join().unwrap()?.is_finite());
    Ok(())
}
