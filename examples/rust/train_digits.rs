//! Trains the bundled digits MLP with Otter from Rust, reports the test accuracy, and exports the
//! trained model. Run from the repository root (after building libotter):
//!   cargo run --offline --manifest-path bindings/rust/Cargo.toml --example train_digits -- examples/digits trained.onnx
//! (the crate finds libotter through OTTER_LIB_DIR, pkg-config, or ./build).
use otter::{Options, Session, TensorList};
use std::path::PathBuf;

fn main() -> Result<(), otter::Error> {
    let args: Vec<String> = std::env::args().collect();
    let data = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("examples/digits"));
    let out = args.get(2).map(String::as_str).unwrap_or("trained.onnx");

    let options = Options::new()?
        .set("loss", "cross_entropy")?
        .set("optimizer", "adamw")?
        .set_f64("lr", 1e-2)?;
    let mut session = Session::from_file(data.join("mlp.onnx"), &options)?;
    let train = TensorList::load_npz(data.join("train.npz"))?;
    let (x, y) = (train.by_name("x")?, train.by_name("y")?);
    let rows = x.shape[0] as usize;
    for epoch in 1..=8 {
        let mut total = 0.0;
        let mut batches = 0;
        for b in (0..rows).step_by(32) {
            let e = (b + 32).min(rows);
            total += session.train_step(&[("x", x.rows(b, e)?), ("label", y.rows(b, e)?)])?;
            batches += 1;
        }
        println!("epoch {epoch}: mean loss {:.4}", total / batches as f64);
    }

    let test = TensorList::load_npz(data.join("test.npz"))?;
    let (tx, ty) = (test.by_name("x")?, test.by_name("y")?);
    let eval = session.eval_step(&[("x", tx.view()?), ("label", ty.view()?)])?;
    let logits = eval.outputs.get(0)?;
    let (p, labels, classes) = (logits.data::<f32>()?, ty.data::<i64>()?, logits.shape[1] as usize);
    let correct = (0..labels.len())
        .filter(|&i| {
            let row = &p[i * classes..(i + 1) * classes];
            let best = (0..classes).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            best as i64 == labels[i]
        })
        .count();
    println!("test loss {:.4}, accuracy {:.3}", eval.loss.unwrap_or(f64::NAN), correct as f64 / labels.len() as f64);
    session.export(out)?;
    println!("wrote {out}");
    Ok(())
}
