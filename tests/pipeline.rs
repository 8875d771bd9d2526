//! The demo through the library, in this process: every preset loads and checks, a bad
//! preset value is named, and the micro demo runs its stages in order with typed results,
//! `demo.json` naming the stage that runs.

use std::sync::atomic::AtomicBool;

use s5::pipeline::{DemoEnd, DemoEvent, DemoOptions, PresetName, run_demo};
use s5::run::demo::{DemoStage, DemoState, DemoTraining, StageResult};
use s5::train::Report;

use crate::common::device;

#[test]
fn every_preset_loads_and_a_bad_value_is_named() {
    for name in PresetName::ALL {
        let preset = name
            .load()
            .unwrap_or_else(|e| panic!("{}: {e}", name.as_str()));
        assert_eq!(preset.name, name.as_str());
        assert!(preset.budget() >= 1);
        assert!(
            preset
                .backbone
                .feature_blocks
                .iter()
                .all(|&b| b < preset.backbone.depth)
        );
    }
    let mut preset = PresetName::Micro.load().unwrap();
    preset.keep_share = 1.5;
    let err = preset.check().unwrap_err().to_string();
    assert!(err.contains("keep_share") && err.contains("1.5"), "{err}");
}

#[test]
fn the_micro_demo_runs_in_process_stage_by_stage() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    device();
    let gpus = vec![s5::device::gpu(None).unwrap().clone()];
    let stop = AtomicBool::new(false);
    let options = DemoOptions {
        out: out.clone(),
        preset: PresetName::Micro.load().unwrap(),
        training: DemoTraining::default(),
        gpus: &gpus,
        stop: &stop,
    };
    let mut begun = Vec::new();
    let mut finished = Vec::new();
    let (mut steps, mut curation_events) = (0, 0);
    let ended = run_demo(&options, &mut |event| match event {
        DemoEvent::Stage { stage, done } => {
            assert_eq!(done, None, "a new demo has nothing done");
            let state = DemoState::load(&out).unwrap().unwrap();
            assert_eq!(
                state.running.map(|r| r.stage),
                Some(stage),
                "demo.json names it"
            );
            begun.push(stage);
        }
        DemoEvent::Finished { stage, result, .. } => {
            let kind_fits = match stage {
                DemoStage::Data => matches!(result, StageResult::Data(_)),
                DemoStage::Curation => matches!(result, StageResult::Curation(_)),
                _ => matches!(result, StageResult::Train(_)),
            };
            assert!(kind_fits, "{stage:?}: {result:?}");
            finished.push(stage);
        }
        DemoEvent::Train(Report::Step(_)) => steps += 1,
        DemoEvent::Curation(_) => curation_events += 1,
        _ => {}
    })
    .unwrap();
    assert_eq!(begun, DemoStage::ALL);
    assert_eq!(finished, DemoStage::ALL);
    let preset = &options.preset;
    assert_eq!(
        steps,
        preset.seed_steps + preset.s4p_steps + 2 * preset.finetune_steps,
        "every step of the four trainings reported"
    );
    assert!(curation_events > 0);
    let DemoEnd::Finished { state, summary } = ended else {
        panic!("the demo stopped");
    };
    // demo.json holds the state returned, as JSON writes it (its floats to 17 digits).
    let written: DemoState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    assert_eq!(DemoState::load(&out).unwrap().unwrap(), written);
    assert!(state.running.is_none());
    assert_eq!(
        std::fs::read_to_string(out.join("summary.md")).unwrap(),
        summary
    );
    let Some(StageResult::Curation(c)) = state.result(DemoStage::Curation) else {
        panic!("no curation result");
    };
    assert!(c.selected_patches >= 1 && c.selected_patches <= preset.budget());
    assert!(c.pool_ood_share > 0.0 && c.pool_ood_share < 1.0);
    let s4p = state.trained(DemoStage::S4p).unwrap();
    assert_eq!(s4p.steps, preset.s4p_steps);
    assert!(s4p.mask_ratio.is_some_and(|r| (0.0..=1.0).contains(&r)));
    // Again: every stage is done, so it is skipped with its time.
    let mut skipped = Vec::new();
    run_demo(&options, &mut |event| {
        if let DemoEvent::Stage { stage, done } = event {
            assert!(done.is_some());
            skipped.push(stage);
        }
    })
    .unwrap();
    assert_eq!(skipped, DemoStage::ALL);
}
