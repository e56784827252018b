//! The digits example (`examples/train_digits.rs`) trains: one epoch on a subset of the
//! training images lowers the training loss.

#[path = "../examples/train_digits.rs"]
#[allow(dead_code)]
mod train_digits;

#[test]
fn one_epoch_lowers_the_loss() {
    let opts = train_digits::Options {
        epochs: 1,
        train_subset: Some(512),
        progress: false,
        ..Default::default()
    };
    let r = train_digits::run(&opts).expect("the example runs");
    assert_eq!(r.train_loss.len(), 1);
    assert!(
        r.train_loss[0] < r.initial_loss,
        "loss before {} after one epoch {}",
        r.initial_loss,
        r.train_loss[0]
    );
}
