//! Data: every bundled spec reads a fixture in its real layout; the augmentations keep image
//! and labels aligned, pad with the ignore values, are deterministic and draw CutMix boxes
//! in range; the loader resumes exactly; every kind of bad input names its file.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, Rgb, RgbImage};
use s5::Error;
use s5::data::augment::{AugmentConfig, CutMixBox, strong, weak};
use s5::data::io::{read_labels, read_sample};
use s5::data::loader::{Keep, LoaderConfig, Prefetcher, item_rng};
use s5::data::source::{TiledSource, grid_offsets};
use s5::data::{DatasetSpec, IGNORE, LabelEncoding, SampleRef, SplitSource};

fn specs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/datasets")
}

/// A label map of blocks, every class present.
fn block_labels(w: u32, h: u32, classes: usize) -> GrayImage {
    GrayImage::from_fn(w, h, |x, y| {
        Luma([((x / 8 + 3 * (y / 8)) as usize % classes) as u8])
    })
}

/// Writes a mask in the spec's encoding; returns the labels s5 must read back.
fn write_mask(spec: &DatasetSpec, path: &Path, labels: &GrayImage) -> GrayImage {
    let (w, h) = labels.dimensions();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // The top-left pixel carries the dataset's "no class" value.
    let mut expected = labels.clone();
    expected.put_pixel(0, 0, Luma([IGNORE]));
    match &spec.encoding {
        LabelEncoding::Index { ignore } => {
            let raw = GrayImage::from_fn(w, h, |x, y| match expected.get_pixel(x, y)[0] {
                IGNORE => Luma([*ignore as u8]),
                l => Luma([l]),
            });
            raw.save(path).unwrap();
        }
        LabelEncoding::MinusOne => {
            let raw = GrayImage::from_fn(w, h, |x, y| match expected.get_pixel(x, y)[0] {
                IGNORE => Luma([0]),
                l => Luma([l + 1]),
            });
            raw.save(path).unwrap();
        }
        LabelEncoding::Palette { ignore_colours } => {
            let rgb = RgbImage::from_fn(w, h, |x, y| match expected.get_pixel(x, y)[0] {
                IGNORE => Rgb(ignore_colours[0]),
                l => Rgb(spec.palette[usize::from(l)]),
            });
            rgb.save(path).unwrap();
        }
    }
    expected
}

fn write_image(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 7]))
        .save(path)
        .unwrap();
}

/// The concrete relative path for a glob (each `*` becomes `name`).
fn concrete(glob: &str, dir_name: &str, file_name: &str) -> String {
    let parts: Vec<&str> = glob.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| p.replace('*', if i == last { file_name } else { dir_name }))
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_bundled_spec_reads_a_fixture_in_its_real_layout() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(specs_dir()).unwrap() {
        let path = entry.unwrap().path();
        let mut spec = DatasetSpec::load(&path).unwrap_or_else(|e| panic!("{e}"));
        names.push(spec.name.clone());
        let root = tempfile::tempdir().unwrap();
        spec.root = Some(root.path().to_path_buf());
        let k = spec.num_classes();
        for (split, source) in spec.splits.clone() {
            let (pattern, rule) = match &source {
                SplitSource::Glob { images, masks } => (images.clone(), masks.clone()),
                SplitSource::List { file, masks } => {
                    let line = "region_a/images/tile_1.tif\n";
                    std::fs::write(root.path().join(file), line).unwrap();
                    ("region_a/images/tile_1.tif".to_string(), masks.clone())
                }
            };
            let mut expected = Vec::new();
            for file in ["tile_1", "tile_2"] {
                let ext = Path::new(&pattern)
                    .extension()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let rel = concrete(
                    &pattern.replace(&format!("*.{ext}"), &format!("{file}.{ext}")),
                    "Rural",
                    file,
                );
                if matches!(source, SplitSource::List { .. }) && file == "tile_2" {
                    continue;
                }
                write_image(&root.path().join(&rel), 40, 24);
                let labels = block_labels(40, 24, k);
                let mask = rule
                    .as_ref()
                    .map(|r| root.path().join(r.mask_for(Path::new(&rel)).unwrap()));
                let want = mask.as_ref().map(|m| write_mask(&spec, m, &labels));
                expected.push((root.path().join(&rel), want));
            }
            let samples = spec
                .samples(&split)
                .unwrap_or_else(|e| panic!("{}/{split}: {e}", spec.name));
            assert_eq!(
                samples.len(),
                expected.len(),
                "{}/{split}: {samples:?}",
                spec.name
            );
            for (sample, (image, want)) in samples.iter().zip(&expected) {
                assert_eq!(&sample.image, image, "{}/{split}", spec.name);
                let s5::data::io::Sample {
                    image: rgb, labels, ..
                } = read_sample(&spec, sample)
                    .unwrap_or_else(|e| panic!("{}/{split}: {e}", spec.name));
                assert_eq!(rgb.dimensions(), (40, 24));
                assert_eq!(
                    labels.as_ref(),
                    want.as_ref(),
                    "{}/{split}: labels",
                    spec.name
                );
            }
        }
    }
    names.sort();
    assert_eq!(
        names,
        ["isaid", "loveda", "openearthmap", "potsdam", "vaihingen"]
    );
}

#[test]
fn sixteen_bit_and_gray_images_and_masks_read() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DatasetSpec::load(&specs_dir().join("potsdam.ron")).unwrap();
    let img16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(8, 4, |x, _| {
        Rgb([x as u16 * 8000, 0, 65535])
    });
    let gray =
        image::ImageBuffer::<image::Luma<u16>, _>::from_fn(8, 4, |x, _| Luma([x as u16 % 6]));
    let (img_path, mask_path) = (dir.path().join("a.tif"), dir.path().join("a_mask.png"));
    img16.save(&img_path).unwrap();
    gray.save(&mask_path).unwrap();
    let s5::data::io::Sample {
        image: rgb, labels, ..
    } = read_sample(
        &spec,
        &SampleRef {
            image: img_path,
            mask: Some(mask_path),
        },
    )
    .unwrap();
    // 16-bit without a range: per band, the 2nd percentile → 0 and the 98th → 255 (band 0
    // holds 0, 8000, ..., 56000 four times each: 0 and 56000; a constant band maps to 0).
    let stretch = |v: f64| s5::data::raster::map_value(v, (0.0, 56000.0));
    assert_eq!(rgb.get_pixel(7, 0).0, [255, 0, 0]);
    assert_eq!(rgb.get_pixel(3, 0).0, [stretch(24000.0), 0, 0]);
    // A fixed full range is the old division by 257.
    let mut full = spec.clone();
    full.imaging.range = Some(s5::run::ValueRange::Fixed {
        low: 0.0,
        high: 65535.0,
    });
    let fixed = read_sample(
        &full,
        &SampleRef {
            image: dir.path().join("a.tif"),
            mask: None,
        },
    )
    .unwrap();
    let scaled = (7.0 * 8000.0 / 257.0_f32).round() as u8;
    assert_eq!(fixed.image.get_pixel(7, 0).0, [scaled, 0, 255]);
    let labels = labels.unwrap();
    assert_eq!(labels.get_pixel(3, 0)[0], 3);
    assert_eq!(
        labels.get_pixel(5, 0)[0],
        IGNORE,
        "Potsdam's 5 (clutter) is ignored"
    );
}

// ---------------------------------------------------------------- augmentation

const COLOURS: [[u8; 3]; 5] = [
    [250, 10, 10],
    [10, 250, 10],
    [10, 10, 250],
    [250, 250, 10],
    [10, 250, 250],
];

/// An image whose colour says its class.
fn coded_scene(w: u32, h: u32) -> (RgbImage, GrayImage) {
    let labels = GrayImage::from_fn(w, h, |x, y| Luma([((x / 12 + 2 * (y / 12)) % 5) as u8]));
    let image = RgbImage::from_fn(w, h, |x, y| {
        Rgb(COLOURS[usize::from(labels.get_pixel(x, y)[0])])
    });
    (image, labels)
}

fn nearest_class(p: [u8; 3]) -> u8 {
    (0..5)
        .min_by_key(|&c| {
            COLOURS[c]
                .iter()
                .zip(p)
                .map(|(a, b)| (i32::from(*a) - i32::from(b)).pow(2))
                .sum::<i32>()
        })
        .unwrap() as u8
}

/// Share of labeled pixels whose colour names their label; padding must be black and ignored.
fn agreement(image: &RgbImage, labels: &GrayImage, valid: &GrayImage) -> f64 {
    let (mut agree, mut total) = (0usize, 0usize);
    for (x, y, l) in labels.enumerate_pixels() {
        let p = image.get_pixel(x, y).0;
        if valid.get_pixel(x, y)[0] == 0 {
            assert_eq!(l[0], IGNORE, "padding at ({x}, {y}) must be ignored");
            assert_eq!(p, [0, 0, 0], "padding at ({x}, {y}) must be black");
            continue;
        }
        total += 1;
        agree += usize::from(nearest_class(p) == l[0]);
    }
    agree as f64 / total.max(1) as f64
}

#[test]
fn weak_transforms_and_cutmix_keep_image_and_labels_aligned() {
    let (image, labels) = coded_scene(90, 70);
    let variants = [
        (
            "default",
            AugmentConfig {
                crop_px: 64,
                ..AugmentConfig::default()
            },
        ),
        (
            "rot90",
            AugmentConfig {
                crop_px: 64,
                rot90_p: 1.0,
                ..AugmentConfig::default()
            },
        ),
        (
            "rotation",
            AugmentConfig {
                crop_px: 64,
                rotate_p: 1.0,
                ..AugmentConfig::default()
            },
        ),
    ];
    for (name, cfg) in variants {
        for seed in 0..40 {
            let mut rng = item_rng(seed, 0);
            let a = weak(&image, Some(&labels), &cfg, &mut rng);
            let share = agreement(&a.image, &a.labels, &a.valid);
            // Only the one-pixel seams that resampling blends may disagree.
            assert!(share > 0.9, "{name} seed {seed}: {share}");
            // CutMix: the box of a second view moves image, labels and validity together.
            let b = weak(&image, Some(&labels), &cfg, &mut rng);
            let boxed = CutMixBox::sample(
                64,
                &AugmentConfig {
                    cutmix_p: 1.0,
                    ..cfg.clone()
                },
                &mut rng,
            )
            .unwrap();
            let mut mixed = a.clone();
            boxed.paste(&mut mixed.image, &b.image, 64, 3);
            boxed.paste(&mut mixed.labels, &b.labels, 64, 1);
            boxed.paste(&mut mixed.valid, &b.valid, 64, 1);
            assert!(
                agreement(&mixed.image, &mixed.labels, &mixed.valid) > 0.9,
                "{name} seed {seed} cutmix"
            );
            for (x, y, p) in mixed.labels.enumerate_pixels() {
                let from = if boxed.contains(x, y) { &b } else { &a };
                assert_eq!(p, from.labels.get_pixel(x, y));
            }
        }
    }
}

#[test]
fn padding_gets_the_ignore_values() {
    let (image, labels) = coded_scene(40, 30);
    let cfg = AugmentConfig {
        crop_px: 64,
        scale_range: (1.0, 1.0),
        hflip_p: 0.0,
        vflip_p: 0.0,
        ..AugmentConfig::default()
    };
    let view = weak(&image, Some(&labels), &cfg, &mut item_rng(3, 3));
    let valid = view.valid.pixels().filter(|p| p[0] == 1).count();
    assert_eq!(
        valid,
        40 * 30,
        "every input pixel is kept, the rest is padding"
    );
    agreement(&view.image, &view.labels, &view.valid);
    // Unlabeled input: every pixel ignored, padding still marked invalid.
    let view = weak(&image, None, &cfg, &mut item_rng(3, 3));
    assert!(view.labels.pixels().all(|p| p[0] == IGNORE));
    assert_eq!(view.valid.pixels().filter(|p| p[0] == 1).count(), 40 * 30);
}

#[test]
fn same_seed_same_bytes() {
    let (image, labels) = s5::data::synth::urban_tile(96, 80, 1);
    let cfg = AugmentConfig {
        crop_px: 64,
        rot90_p: 0.5,
        rotate_p: 0.5,
        ..AugmentConfig::default()
    };
    let run = |seed| {
        let mut rng = item_rng(seed, 42);
        let v = weak(&image, Some(&labels), &cfg, &mut rng);
        let s = strong(&v.image, &cfg, &mut rng);
        let b = CutMixBox::sample(64, &cfg, &mut rng);
        (v, s, b)
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9).1, run(10).1);
    // Synthetic data too.
    let cfg = s5::data::synth::SynthConfig {
        tile_px: 64,
        train_per_domain: 1,
        val_per_domain: 1,
        pool_in_domain: 1,
        pool_ood_per_kind: 1,
        pool_width_px: 80,
        seed: 5,
        pool_images: None,
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    s5::data::synth::generate(a.path(), &cfg, &|| {}).unwrap();
    s5::data::synth::generate(b.path(), &cfg, &|| {}).unwrap();
    let files = |d: &Path| {
        let mut v: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() {
                    stack.push(e)
                } else {
                    v.push((
                        e.strip_prefix(d).unwrap().to_path_buf(),
                        std::fs::read(&e).unwrap(),
                    ))
                }
            }
        }
        v.sort();
        v
    };
    assert_eq!(files(a.path()), files(b.path()));
}

#[test]
fn cutmix_boxes_stay_within_their_area_and_aspect_ranges() {
    let cfg = AugmentConfig {
        cutmix_p: 1.0,
        ..AugmentConfig::default()
    };
    let crop = 512;
    let mut rng = item_rng(11, 0);
    for _ in 0..2000 {
        let b = CutMixBox::sample(crop, &cfg, &mut rng).expect("p = 1");
        let area = f64::from(b.width_px * b.height_px) / f64::from(crop * crop);
        let aspect = f64::from(b.height_px) / f64::from(b.width_px);
        assert!((0.019..=0.41).contains(&area), "area {area}");
        assert!((0.29..=3.4).contains(&aspect), "aspect {aspect}");
        assert!(b.x_px + b.width_px <= crop && b.y_px + b.height_px <= crop);
    }
    let none = AugmentConfig {
        cutmix_p: 0.0,
        ..cfg
    };
    assert!(CutMixBox::sample(crop, &none, &mut rng).is_none());
}

// ---------------------------------------------------------------- tiling and loading

#[test]
fn tiles_cover_every_side() {
    assert_eq!(grid_offsets(256, 128, 128), [0, 128]);
    assert_eq!(grid_offsets(300, 128, 128), [0, 128, 172]);
    assert_eq!(grid_offsets(100, 128, 64), [0]);
    assert_eq!(grid_offsets(200, 128, 50), [0, 50, 72]);
    let dir = tempfile::tempdir().unwrap();
    write_image(&dir.path().join("a/b/big.png"), 300, 130);
    write_image(&dir.path().join("small.jpg"), 50, 60);
    let source = TiledSource::from_folder(dir.path(), 128, 128, false).unwrap();
    assert_eq!(source.images.len(), 2);
    assert_eq!(source.patches.len(), 3 * 2 + 1);
}

#[test]
fn loader_resumes_with_the_same_batches_and_skips_bad_samples() {
    let make = |i: usize, rng: &mut rand_chacha::ChaCha8Rng| -> s5::Result<(usize, u32)> {
        use rand::Rng;
        Ok((i, rng.random()))
    };
    let config = LoaderConfig {
        batch: 3,
        prefetch: 2,
        seed: 4,
        skip_bad: false,
        start_step: 0,
        epoch_len: 7,
    };
    let all: Vec<_> = Prefetcher::spawn(5, config, make)
        .take(6)
        .map(|b| b.unwrap())
        .collect();
    let resumed: Vec<_> = Prefetcher::spawn(
        5,
        LoaderConfig {
            start_step: 4,
            ..config
        },
        make,
    )
    .take(2)
    .map(|b| b.unwrap())
    .collect();
    assert_eq!(resumed[0].items, all[4].items);
    assert_eq!(resumed[1].items, all[5].items);
    // The labeled set (5) repeats to the epoch length (7): each sample at least once per epoch.
    let epoch: Vec<usize> = all
        .iter()
        .flat_map(|b| b.items.iter().map(|i| i.0))
        .take(7)
        .collect();
    for s in 0..5 {
        assert!(epoch.contains(&s), "{epoch:?}");
    }
    // A sample that fails: skipped with skip_bad, an error without.
    let flaky = |i: usize, _: &mut rand_chacha::ChaCha8Rng| -> s5::Result<usize> {
        if i == 2 {
            Err(Error::ImageRead {
                path: "bad.png".into(),
                reason: "corrupt".into(),
            })
        } else {
            Ok(i)
        }
    };
    let skipped: Vec<usize> = Prefetcher::spawn(
        5,
        LoaderConfig {
            skip_bad: true,
            ..config
        },
        flaky,
    )
    .take(4)
    .flat_map(|b| b.unwrap().items)
    .collect();
    assert!(!skipped.contains(&2));
    let err = Prefetcher::spawn(5, config, flaky)
        .find_map(|b| b.err())
        .unwrap();
    assert!(err.to_string().contains("bad.png"), "{err}");
}

/// A stream that keeps part of each batch (a rank's share) decodes those positions alone,
/// into the very items a whole stream makes there; the rest are placeholders.
#[test]
fn a_stream_decodes_only_the_share_it_keeps() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let config = LoaderConfig {
        batch: 5,
        prefetch: 1,
        seed: 9,
        skip_bad: false,
        start_step: 0,
        epoch_len: 11,
    };
    // Each stream counts its own calls (a stream's thread may still make a batch after the
    // stream is dropped).
    let counting = |made: Arc<AtomicUsize>| {
        move |i: usize, rng: &mut rand_chacha::ChaCha8Rng| -> s5::Result<(usize, u32)> {
            use rand::Rng;
            made.fetch_add(1, Ordering::SeqCst);
            Ok((i + 1, rng.random()))
        }
    };
    let whole: Vec<_> = Prefetcher::spawn(11, config, counting(Arc::default()))
        .take(4)
        .map(|b| b.unwrap().items)
        .collect();
    let keep = Keep::default();
    keep.set(1..3);
    let made = Arc::new(AtomicUsize::new(0));
    let part: Vec<_> = Prefetcher::spawn_keeping(11, config, keep, counting(Arc::clone(&made)))
        .take(4)
        .map(|b| b.unwrap().items)
        .collect();
    // Batches made ahead (prefetch 1, and the one being made) may be whole or in part: at
    // most 2 past the 4 taken.
    let calls = made.load(Ordering::SeqCst);
    assert!(
        (8..=12).contains(&calls),
        "{calls} items made for 4 batches of 2 kept"
    );
    for (whole, part) in whole.iter().zip(&part) {
        assert_eq!(part.len(), 5);
        assert_eq!(part[1..3], whole[1..3]);
        assert!(
            part[..1]
                .iter()
                .chain(&part[3..])
                .all(|&(i, r)| i == 0 && r == 0)
        );
        assert!(
            whole.iter().all(|&(i, _)| i > 0),
            "decoded items are never the placeholder"
        );
    }
}

// ---------------------------------------------------------------- bad input

#[test]
fn every_bad_input_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = {
        let mut s = DatasetSpec::load(&specs_dir().join("potsdam.ron")).unwrap();
        s.root = Some(d.to_path_buf());
        s
    };
    write_image(&d.join("good.png"), 20, 10);
    let sample = |img: &str, mask: &str| SampleRef {
        image: d.join(img),
        mask: Some(d.join(mask)),
    };

    // Corrupt image.
    std::fs::write(d.join("corrupt.png"), b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let e = read_sample(&spec, &sample("corrupt.png", "m.png")).unwrap_err();
    assert!(
        matches!(e, Error::ImageRead { .. }) && e.to_string().contains("corrupt.png"),
        "{e}"
    );
    // Truncated image.
    let bytes = std::fs::read(d.join("good.png")).unwrap();
    std::fs::write(d.join("truncated.png"), &bytes[..bytes.len() / 2]).unwrap();
    let e = read_sample(&spec, &sample("truncated.png", "m.png")).unwrap_err();
    assert!(e.to_string().contains("truncated.png"), "{e}");
    // Mask of the wrong size.
    GrayImage::new(10, 10)
        .save(d.join("small_mask.png"))
        .unwrap();
    let e = read_sample(&spec, &sample("good.png", "small_mask.png")).unwrap_err();
    assert!(matches!(e, Error::MaskSize { .. }), "{e}");
    assert!(
        e.to_string().contains("small_mask.png") && e.to_string().contains("20x10"),
        "{e}"
    );
    // Label out of range (Potsdam: 5 classes, 5 ignored, 7 is wrong).
    let mut m = GrayImage::new(20, 10);
    m.put_pixel(3, 4, Luma([7]));
    m.save(d.join("bad_label.png")).unwrap();
    let e = read_labels(&d.join("bad_label.png"), &spec).unwrap_err();
    assert!(
        matches!(e, Error::LabelOutOfRange { x: 3, y: 4, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("bad_label.png"), "{e}");
    // A colour outside an iSAID palette.
    let isaid = DatasetSpec::load(&specs_dir().join("isaid.ron")).unwrap();
    RgbImage::from_pixel(4, 4, Rgb([1, 2, 3]))
        .save(d.join("odd_colour.png"))
        .unwrap();
    let e = read_labels(&d.join("odd_colour.png"), &isaid).unwrap_err();
    assert!(
        e.to_string().contains("odd_colour.png") && e.to_string().contains("[1, 2, 3]"),
        "{e}"
    );
    // Missing file.
    let e = read_sample(&spec, &sample("nowhere.png", "m.png")).unwrap_err();
    assert!(
        matches!(e, Error::MissingFile { .. }) && e.to_string().contains("nowhere.png"),
        "{e}"
    );
    // A spec that does not parse, and one that is inconsistent.
    std::fs::write(d.join("broken.ron"), "(name: \"x\", classes: [").unwrap();
    let e = DatasetSpec::load(&d.join("broken.ron")).unwrap_err();
    assert!(
        matches!(e, Error::Spec { .. }) && e.to_string().contains("broken.ron"),
        "{e}"
    );
    let text = std::fs::read_to_string(specs_dir().join("potsdam.ron"))
        .unwrap()
        .replace("(255, 255, 0)]", "]");
    std::fs::write(d.join("short_palette.ron"), text).unwrap();
    let e = DatasetSpec::load(&d.join("short_palette.ron")).unwrap_err();
    assert!(
        e.to_string().contains("short_palette.ron") && e.to_string().contains("palette"),
        "{e}"
    );
}

#[test]
fn labeled_and_unlabeled_streams_from_synthetic_data() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let cfg = s5::data::synth::SynthConfig {
        tile_px: 64,
        train_per_domain: 3,
        val_per_domain: 1,
        pool_in_domain: 2,
        pool_ood_per_kind: 1,
        pool_width_px: 96,
        seed: 2,
        pool_images: None,
    };
    let out = s5::data::synth::generate(dir.path(), &cfg, &|| {}).unwrap();
    let urban = Arc::new(DatasetSpec::load(&out.urban_spec).unwrap());
    let pool_spec = Arc::new(DatasetSpec::load(&out.pool_spec).unwrap());
    let pool =
        Arc::new(TiledSource::new(pool_spec.samples("unlabeled").unwrap(), 64, 64, false).unwrap());
    // 7 pool images of 96 x 64 px, two 64-px patches each.
    assert_eq!(pool.patches.len(), 14);
    let aug = AugmentConfig {
        crop_px: 48,
        ..AugmentConfig::default()
    };
    let loader = LoaderConfig {
        batch: 4,
        prefetch: 2,
        seed: 1,
        skip_bad: false,
        start_step: 0,
        epoch_len: pool.patches.len(),
    };
    let samples = Arc::new(urban.samples("train").unwrap());
    // The authors' MoE-MDF colour augmentations on labeled crops change pixels, not labels.
    let strong_aug = AugmentConfig {
        labeled_strong: true,
        ..aug.clone()
    };
    let plain = s5::data::loader::labeled_stream(
        urban.clone(),
        samples.clone(),
        aug.clone(),
        loader,
        Keep::default(),
    );
    let strong = s5::data::loader::labeled_stream(
        urban.clone(),
        samples.clone(),
        strong_aug,
        loader,
        Keep::default(),
    );
    let (plain, strong) = (plain.take(2), strong.take(2));
    let mut recoloured = 0;
    for (p, s) in plain.zip(strong) {
        for (p, s) in p.unwrap().items.iter().zip(&s.unwrap().items) {
            assert_eq!((&p.labels, &p.valid), (&s.labels, &s.valid));
            recoloured += usize::from(p.image != s.image);
        }
    }
    assert!(recoloured > 0, "labeled_strong changed no crop");
    let labeled = s5::data::loader::labeled_stream(
        urban.clone(),
        samples,
        aug.clone(),
        loader,
        Keep::default(),
    );
    let unlabeled =
        s5::data::loader::unlabeled_stream(pool_spec, pool, aug, loader, Keep::default());
    for (l, u) in labeled.zip(unlabeled).take(4) {
        let (l, u) = (l.unwrap(), u.unwrap());
        assert_eq!(l.items.len(), 4);
        for item in &l.items {
            assert_eq!(
                (item.image.len(), item.labels.len()),
                (3 * 48 * 48, 48 * 48)
            );
            assert!(
                item.labels
                    .iter()
                    .all(|&c| c == IGNORE || usize::from(c) < urban.num_classes())
            );
        }
        for item in &u.items {
            assert_eq!(
                (item.weak.len(), item.strong.len(), item.valid.len()),
                (3 * 48 * 48, 3 * 48 * 48, 48 * 48)
            );
        }
    }
}

#[test]
fn the_default_augment_config_file_is_the_paper_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/configs/augment.ron");
    let cfg: AugmentConfig = ron::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let default = AugmentConfig::default();
    assert!((cfg.cutmix_aspect.1 - default.cutmix_aspect.1).abs() < 1e-5);
    assert_eq!(
        AugmentConfig {
            cutmix_aspect: default.cutmix_aspect,
            ..cfg
        },
        default
    );
    // Fields are optional: a partial file keeps the other defaults.
    let partial: AugmentConfig = ron::from_str("(crop_px: 256)").unwrap();
    assert_eq!(
        partial,
        AugmentConfig {
            crop_px: 256,
            ..default
        }
    );
}

/// `s5 synth --pool-images N` makes a pool of exactly N images in the default mix of kinds
/// (24 in-domain to 3 of each out-of-distribution kind), rounded by largest remainder; the
/// default pool is unchanged.
#[test]
fn pool_images_scale_the_pool_in_its_default_mix() {
    use s5::data::synth::{PoolKind, SynthConfig};
    let default = SynthConfig::default();
    assert_eq!(
        default.pool_counts(),
        [
            (PoolKind::InDomain, 24),
            (PoolKind::Cloud, 3),
            (PoolKind::Haze, 3),
            (PoolKind::Sea, 3),
            (PoolKind::SensorNoise, 3),
            (PoolKind::OtherDomain, 3),
        ]
    );
    let big = SynthConfig {
        pool_images: Some(2000),
        ..SynthConfig::default()
    };
    let counts: Vec<usize> = big.pool_counts().iter().map(|(_, n)| *n).collect();
    // 2000 · 24/39 = 1230.8, 2000 · 3/39 = 153.8 each: floors 1230 + 5 · 153 = 1995, and the
    // five units left go to the largest remainders (0.846 of each small kind beats 0.769).
    assert_eq!(counts, [1230, 154, 154, 154, 154, 154]);
    assert_eq!(big.pool_total(), 2000);
}

/// The suburb domain's label space conflicts with urban's: urban's buildings split by roof,
/// its low vegetation and trees merged; the urban masks never show the split.
#[test]
fn the_suburb_domain_labels_the_same_scenes_another_way() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = s5::data::synth::SynthConfig {
        tile_px: 128,
        train_per_domain: 6,
        val_per_domain: 1,
        pool_in_domain: 1,
        pool_ood_per_kind: 1,
        pool_width_px: 160,
        seed: 4,
        pool_images: None,
    };
    let out = s5::data::synth::generate(dir.path(), &cfg, &|| {}).unwrap();
    let suburb = DatasetSpec::load(&out.suburb_spec).unwrap();
    let urban = DatasetSpec::load(&out.urban_spec).unwrap();
    assert_eq!(suburb.name, "synth-suburb");
    assert_eq!(
        suburb.classes,
        [
            "impervious_surface",
            "flat_roof",
            "tiled_roof",
            "vegetation",
            "car",
            "clutter"
        ]
    );
    assert_ne!(suburb.classes, urban.classes);
    let count = |spec: &DatasetSpec| {
        let mut seen = [0usize; 256];
        for sample in spec.samples("train").unwrap() {
            let labels = s5::data::io::read_sample(spec, &sample).unwrap().labels;
            for p in labels.unwrap().pixels() {
                seen[usize::from(p[0])] += 1;
            }
        }
        seen
    };
    let (s, u) = (count(&suburb), count(&urban));
    assert!(s[1] > 0 && s[2] > 0, "flat and tiled roofs: {:?}", &s[..8]);
    assert!(
        s[6..].iter().all(|&n| n == 0),
        "no class past the suburb's six: {:?}",
        &s[..8]
    );
    assert!(
        u[6..].iter().all(|&n| n == 0),
        "urban never shows the roof split: {:?}",
        &u[..8]
    );
}
