//! Training pieces: the learning-rate schedule.

#[test]
fn cosine_schedule_warms_up_then_decays_to_its_floor() {
    use s5::train::CosineSchedule;
    let s = CosineSchedule {
        base_lr: 1e-3,
        final_lr: 0.0,
        warmup_steps: 10,
        total_steps: 110,
    };
    assert!((s.lr(0) - 1e-4).abs() < 1e-15);
    assert!((s.lr(9) - 1e-3).abs() < 1e-15);
    assert!((s.lr(10) - 1e-3).abs() < 1e-15);
    assert!(
        (s.lr(60) - 5e-4).abs() < 1e-12,
        "half way down: {}",
        s.lr(60)
    );
    assert!(s.lr(110).abs() < 1e-15 && s.lr(500).abs() < 1e-15);
    let mut last = f64::INFINITY;
    for step in 10..=110 {
        assert!(s.lr(step) <= last, "not monotone at {step}");
        last = s.lr(step);
    }
    // The paper's S4P: no warm-up, cosine to 0 from the first iteration.
    let s4p = CosineSchedule {
        base_lr: 5e-5,
        final_lr: 0.0,
        warmup_steps: 0,
        total_steps: 120_000,
    };
    assert_eq!(s4p.lr(0), 5e-5);
}
