//! GeoTIFF in and out: band choice and 16-bit mapping, nodata, chunk-by-chunk reads of striped,
//! tiled and planar files, and `s5 predict` writing GeoTIFFs whose georeferencing, CRS and
//! nodata GDAL reads as the input's. The fixtures are written here with the `tiff` crate and
//! Debian's `gdal-bin` (`gdal_translate`, `gdalinfo`), which `.ci/run` installs.

use std::path::{Path, PathBuf};
use std::process::Command;

use s5::data::raster::{NODATA_FILL, Raster, map_value};
use s5::run::{Imaging, ValueRange};
use tiff::encoder::{TiffEncoder, colortype};

use crate::common::{s5, small_segmentor};

fn gdal(tool: &str) -> Command {
    let found = Command::new(tool).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`{tool}` is missing: install Debian's gdal-bin (`apt-get install gdal-bin`; `.ci/run` does)"
    );
    Command::new(tool)
}

fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gdalinfo(path: &Path) -> serde_json::Value {
    serde_json::from_str(&run_ok(gdal("gdalinfo").arg("-json").arg(path))).unwrap()
}

/// A 4-band 16-bit image with 12-bit values: band b of pixel (x, y) is
/// `(x * 97 + y * 31 + b * 1000) % 4096`, and pixel (0, 0) is 0 in every band (nodata).
fn four_band_12_bit(w: u32, h: u32) -> Vec<u16> {
    let mut data = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            for b in 0..4u32 {
                let v = if (x, y) == (0, 0) {
                    0
                } else {
                    (x * 97 + y * 31 + b * 1000) % 4096
                };
                data.push(v as u16);
            }
        }
    }
    data
}

fn write_rgba16(path: &Path, w: u32, h: u32, data: &[u16]) {
    let file = std::fs::File::create(path).unwrap();
    TiffEncoder::new(file)
        .unwrap()
        .write_image::<colortype::RGBA16>(w, h, data)
        .unwrap();
}

/// Georeferences `src` into `dst` in UTM zone 17N (0.1 m pixels) with `nodata`, in the
/// layout `options` asks for.
fn georeference(src: &Path, dst: &Path, nodata: &str, options: &[&str]) {
    run_ok(
        gdal("gdal_translate")
            .args(["-q", "-of", "GTiff", "-a_srs", "EPSG:32617"])
            .args(["-a_ullr", "500000", "4000000", "500003.7", "3999997.1"])
            .args(["-a_nodata", nodata])
            .args(options.iter().flat_map(|o| ["-co", o]))
            .arg(src)
            .arg(dst),
    );
}

/// Bands chosen and a fixed range: every pixel reads to round((v - low) / (high - low) · 255),
/// whatever the file's layout (striped chunky, tiled with edge tiles, tiled planar).
#[test]
fn chosen_bands_of_a_12_bit_image_map_to_the_expected_8_bit_values() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (37, 29);
    let data = four_band_12_bit(w, h);
    let plain = dir.path().join("plain.tif");
    write_rgba16(&plain, w, h, &data);
    // GDAL writes a 4-band file as RGB + one extra band unless told otherwise; 4 plain bands
    // is the multispectral layout (as satellite products ship).
    let layouts = [
        ("striped.tif", vec!["PHOTOMETRIC=MINISBLACK"]),
        (
            "tiled.tif",
            vec![
                "PHOTOMETRIC=MINISBLACK",
                "TILED=YES",
                "BLOCKXSIZE=16",
                "BLOCKYSIZE=16",
            ],
        ),
        (
            "planar.tif",
            vec![
                "TILED=YES",
                "BLOCKXSIZE=16",
                "BLOCKYSIZE=16",
                "INTERLEAVE=BAND",
                "COMPRESS=DEFLATE",
            ],
        ),
    ];
    let imaging = Imaging {
        bands: Some([3, 2, 1]),
        range: Some(ValueRange::Fixed {
            low: 0.0,
            high: 2047.0,
        }),
        nodata: None,
    };
    // Hand-checked points of the map: 0 → 0, 1024 → 128 (127.56 rounded), ≥ 2047 → 255.
    assert_eq!(map_value(0.0, (0.0, 2047.0)), 0);
    assert_eq!(map_value(1024.0, (0.0, 2047.0)), 128);
    assert_eq!(map_value(3000.0, (0.0, 2047.0)), 255);
    for (name, options) in layouts {
        let path = dir.path().join(name);
        georeference(&plain, &path, "0", &options);
        let mut raster = Raster::open(&path, &imaging).unwrap();
        assert_eq!(raster.size_px(), (w, h));
        assert_eq!(raster.bits(), 16);
        assert_eq!(
            raster.nodata(),
            Some(0.0),
            "{name}: the file's nodata is read"
        );
        let window = raster.read_all().unwrap();
        let mask = window.nodata.as_ref().expect("a nodata mask");
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) as usize;
                let got = window.rgb.get_pixel(x, y).0;
                if (x, y) == (0, 0) {
                    assert!(mask[i], "{name}: pixel (0, 0) has no data");
                    assert_eq!(got, NODATA_FILL, "{name}: nodata pixels are filled");
                    continue;
                }
                assert!(!mask[i]);
                let want: [u8; 3] = std::array::from_fn(|c| {
                    let band = [3, 2, 1][c];
                    map_value(f64::from(data[i * 4 + band]), (0.0, 2047.0))
                });
                assert_eq!(got, want, "{name}: pixel ({x}, {y})");
            }
        }
        // A window reads the same pixels as the whole image.
        let part = raster.read(5, 3, 20, 17).unwrap();
        for (x, y, p) in part.rgb.enumerate_pixels() {
            assert_eq!(*p, *window.rgb.get_pixel(x + 5, y + 3), "{name} window");
        }
    }
    // A band the image lacks is refused naming the file and the count.
    let wrong = Imaging {
        bands: Some([4, 2, 1]),
        ..imaging
    };
    let err = Raster::open(&plain, &wrong).err().unwrap().to_string();
    assert!(
        err.contains("plain.tif") && err.contains("has 4 bands"),
        "{err}"
    );
    // RGB with a non-alpha extra band is refused with the command that rewrites it.
    let rgbn = dir.path().join("rgbn.tif");
    georeference(&plain, &rgbn, "0", &["PHOTOMETRIC=RGB", "ALPHA=NO"]);
    let err = Raster::open(&rgbn, &imaging)
        .err()
        .expect("RGB + a non-alpha band is refused")
        .to_string();
    assert!(
        err.contains("rgbn.tif") && err.contains("PHOTOMETRIC=MINISBLACK"),
        "{err}"
    );
}

/// 16-bit without a range: per band, the 2nd percentile maps to 0 and the 98th to 255.
#[test]
fn sixteen_bit_without_a_range_is_stretched_by_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (100, 1);
    // Values 0, 10, ..., 990 in every band: nearest-rank percentiles 2 → 10·floor(0.02·99) =
    // 10, 98 → 10·floor(0.98·99) = 970.
    let data: Vec<u16> = (0..w).flat_map(|x| [(x * 10) as u16; 4]).collect();
    let path = dir.path().join("ramp.tif");
    write_rgba16(&path, w, h, &data);
    let mut raster = Raster::open(&path, &Imaging::default()).unwrap();
    assert_eq!(
        raster.stretch(),
        s5::data::raster::Stretch::Linear([(10.0, 970.0); 3])
    );
    let rgb = raster.read_all().unwrap().rgb;
    assert_eq!(rgb.get_pixel(0, 0).0, [0; 3]);
    assert_eq!(rgb.get_pixel(99, 0).0, [255; 3]);
    assert_eq!(rgb.get_pixel(49, 0).0[0], map_value(490.0, (10.0, 970.0)));
}

/// Pixels without data change no input the model, the loss or the metrics see: two files that
/// differ only there read to the same image and labels (IGNORE at nodata), whole and by patch.
#[test]
fn nodata_pixels_change_neither_image_nor_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (40u32, 24u32);
    let border = |x: u32, y: u32| x < 6 || y < 4;
    let image = |fill: u8| {
        image::RgbImage::from_fn(w, h, |x, y| {
            if border(x, y) {
                image::Rgb([fill; 3])
            } else {
                image::Rgb([(x * 5) as u8, (y * 9) as u8, 77])
            }
        })
    };
    let mask = |label: u8| {
        image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([if border(x, y) {
                label
            } else {
                ((x + y) % 3) as u8
            }])
        })
    };
    // Two datasets whose files differ only in the border, nodata in both (255 in every band,
    // the spec's value): its mask labels differ.
    let mut specs = Vec::new();
    for (name, label) in [("a", 0u8), ("b", 2u8)] {
        let root = dir.path().join(name);
        std::fs::create_dir_all(root.join("img")).unwrap();
        std::fs::create_dir_all(root.join("ann")).unwrap();
        image(255).save(root.join("img/t.png")).unwrap();
        mask(label).save(root.join("ann/t.png")).unwrap();
        let mut spec = s5::data::synth::urban_spec();
        spec.classes.truncate(3);
        spec.palette.truncate(3);
        spec.background = None;
        spec.root = Some(root.clone());
        spec.imaging.nodata = Some(255.0);
        spec.splits = [(
            "train".to_string(),
            s5::data::SplitSource::Glob {
                images: "img/*.png".into(),
                masks: Some(s5::data::MaskRule {
                    dir: ("img".into(), "ann".into()),
                    suffix: (".png".into(), ".png".into()),
                }),
            },
        )]
        .into();
        specs.push(spec);
    }
    let read = |spec: &s5::data::DatasetSpec| {
        let samples = spec.samples("train").unwrap();
        s5::data::io::read_sample(spec, &samples[0]).unwrap()
    };
    let (a, b) = (read(&specs[0]), read(&specs[1]));
    assert_eq!(a.image, b.image, "nodata pixels read as the same fill");
    assert_eq!(a.labels, b.labels, "and as IGNORE in the labels");
    let labels = a.labels.unwrap();
    for (x, y, l) in labels.enumerate_pixels() {
        assert_eq!(l.0[0] == s5::data::IGNORE, border(x, y), "({x}, {y})");
    }
    // The same through lazy tiling (what S4P and curation scoring read), which decodes a
    // patch's window only: same pixels, same nodata mask, same labels.
    let patches: Vec<_> = specs
        .iter()
        .map(|spec| {
            let source =
                s5::data::source::TiledSource::new(spec.samples("train").unwrap(), 16, 16, false)
                    .unwrap();
            source.load(spec, 0).unwrap()
        })
        .collect();
    assert_eq!(patches[0], patches[1]);
    let patch = &patches[0];
    assert_eq!(patch.image.dimensions(), (16, 16));
    let nodata = patch.nodata.as_ref().unwrap();
    assert!(nodata[0] && !nodata[15 * 16 + 15]);
    assert_eq!(patch.image.get_pixel(0, 0).0, NODATA_FILL);
}

/// A curation score leaves nodata pixels out: a patch's entropy and confidence are the means
/// over its pixels with data, computed here from the model's logits in plain arithmetic. The
/// pixels called nodata are those the model is least sure of, so that the mean with them and
/// the mean without them differ whatever the (random) model.
#[test]
fn nodata_pixels_are_left_out_of_a_curation_score() {
    use burn::tensor::{Tensor, TensorData};
    use s5::curate::score::{LoadedPatch, ScoreSetup, batch_inputs, score_batch};
    let device = crate::common::device();
    let model = s5::model::Segmentor::new(&small_segmentor(1, 3), &device);
    let side = 32usize;
    let plane = side * side;
    let picture = image::RgbImage::from_fn(side as u32, side as u32, |x, y| {
        if x < 12 {
            image::Rgb([255; 3])
        } else {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, ((x * y) % 251) as u8])
        }
    });
    let patch =
        |nodata: Option<Vec<bool>>| LoadedPatch::new(0, picture.clone()).with_nodata(nodata);
    // The reference: the patch through the model, softmax, entropy and confidence per pixel.
    let (pixels, _) = batch_inputs(&[patch(None)], side);
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, side, side]), &device);
    let (logits, maps) = model.forward_with_features(images, 0);
    let logits: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let (entropy, confidence): (Vec<f64>, Vec<f64>) = (0..plane)
        .map(|i| {
            let z: Vec<f64> = (0..3).map(|k| f64::from(logits[k * plane + i])).collect();
            assert!(z.iter().all(|v| v.is_finite()), "logits at {i}: {z:?}");
            let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - top).exp()).collect();
            let total: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|v| v / total).collect();
            let h = -p.iter().map(|&q| q * q.max(1e-30).ln()).sum::<f64>();
            (h, p.iter().copied().fold(0.0, f64::max))
        })
        .unzip();
    // Nodata: the third of the pixels with the highest entropy.
    let mut order: Vec<usize> = (0..plane).collect();
    order.sort_by(|&a, &b| entropy[b].total_cmp(&entropy[a]).then(a.cmp(&b)));
    let mut nodata = vec![false; plane];
    for &i in &order[..plane / 3] {
        nodata[i] = true;
    }
    let mean_over = |values: &[f64], keep: &dyn Fn(usize) -> bool| {
        let kept: Vec<f64> = (0..plane).filter(|&i| keep(i)).map(|i| values[i]).collect();
        kept.iter().sum::<f64>() / kept.len() as f64
    };
    let valid_entropy = mean_over(&entropy, &|i| !nodata[i]);
    let all_entropy = mean_over(&entropy, &|_| true);
    let valid_confidence = mean_over(&confidence, &|i| !nodata[i]);

    let dim = maps[3].dims()[1];
    let centroid: Vec<f32> = (0..dim).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
    let prototypes = s5::run::curation::Prototypes {
        model: s5::run::curation::ModelRef {
            checkpoint: PathBuf::new(),
            sha256: String::new(),
        },
        dataset: "three".into(),
        split: "train".into(),
        embedding: Default::default(),
        centroids: vec![centroid.clone()],
        labeled_per_cluster: vec![1],
        mean_similarity: 1.0,
        seed: 0,
        restarts: 1,
    };
    let centroids = Tensor::<2>::from_data(TensorData::new(centroid, [1, dim]), &device);
    let setup = ScoreSetup {
        dataset: 0,
        background: None,
        batch: 1,
        sample_below: 0,
    };
    let score = |patch: LoadedPatch| {
        score_batch(
            &model,
            &[patch],
            side,
            &centroids,
            &prototypes,
            setup,
            &device,
        )
        .unwrap()
        .records[0]
    };
    let with_nodata = score(patch(Some(nodata.clone())));
    let without = score(patch(None));
    // Within f32 summation error of the reference, and far nearer to the mean over the pixels
    // with data than to the mean over all of them.
    let gap = (valid_entropy - all_entropy).abs();
    assert!(
        gap.is_finite() && gap > 0.0,
        "{valid_entropy} {all_entropy}"
    );
    let close = |got: f32, want: f64, within: f64, what: &str| {
        let off = (f64::from(got) - want).abs();
        assert!(
            got.is_finite() && want.is_finite() && off <= 1e-4 && off < within,
            "{what}: {got} against {want} (the entropy means with and without nodata differ \
             by {gap})"
        );
    };
    let entropy_what = "entropy over pixels with data";
    close(with_nodata.entropy, valid_entropy, gap / 10.0, entropy_what);
    close(
        without.entropy,
        all_entropy,
        gap / 10.0,
        "entropy over every pixel",
    );
    let confidence_what = "confidence over pixels with data";
    close(
        with_nodata.confidence,
        valid_confidence,
        1e-4,
        confidence_what,
    );
}

/// A curation plan keeps the pool spec's `imaging`; a shard is not scored once the spec's
/// imaging has changed, and a plan with another imaging makes the scored shards stale.
#[test]
fn a_curation_plan_keeps_the_imaging_it_was_made_with() {
    use s5::curate::run::{CurationRun, PlanOptions, Stale};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pool");
    std::fs::create_dir_all(root.join("img")).unwrap();
    for k in 0..2u8 {
        image::RgbImage::from_pixel(32, 32, image::Rgb([k * 90, 40, 200]))
            .save(root.join(format!("img/{k}.png")))
            .unwrap();
    }
    let mut spec = s5::data::synth::urban_spec();
    spec.root = Some(root.clone());
    spec.imaging.nodata = Some(255.0);
    spec.splits = [(
        "unlabeled".to_string(),
        s5::data::SplitSource::Glob {
            images: "img/*.png".into(),
            masks: None,
        },
    )]
    .into();
    let spec_path = root.join("pool.ron");
    spec.save(&spec_path).unwrap();
    let out = dir.path().join("curate");
    let plan = |stale: Stale| {
        let (run, _) = CurationRun::open(&out).unwrap();
        run.plan(&PlanOptions {
            spec: spec_path.clone(),
            split: "unlabeled".into(),
            patch_px: 16,
            stride_px: 16,
            truth: None,
            stale,
        })
    };
    let made = plan(Stale::Refuse).unwrap().plan;
    assert_eq!(made.imaging, spec.imaging);
    let mut default_imaging = made.clone();
    default_imaging.imaging = Imaging::default();
    assert_ne!(
        made.numbering_sha256(),
        default_imaging.numbering_sha256(),
        "the imaging is part of what shards are valid for"
    );
    // The spec changes: scoring refuses before it loads anything, naming the spec.
    let mut changed = spec.clone();
    changed.imaging.nodata = Some(0.0);
    changed.save(&spec_path).unwrap();
    let refused = s5()
        .args(["curate", "score", "--model", "no-model-needed", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("pool.ron")
            && err.contains("`imaging` is now")
            && err.contains("--move-stale"),
        "{err}"
    );
    // A scored shard (its summary stands for one here) makes a plan with the new imaging
    // stale: refused, naming why.
    let shards = out.join("curation/shards");
    std::fs::create_dir_all(&shards).unwrap();
    std::fs::write(shards.join("shard-0-of-1.json"), "{}").unwrap();
    let err = plan(Stale::Refuse).unwrap_err().to_string();
    assert!(err.contains("another `imaging`"), "{err}");
    let moved = plan(Stale::MoveAside).unwrap();
    assert_eq!(moved.plan.imaging, changed.imaging);
    assert!(moved.moved_aside.is_some());
}

/// A checkpoint folder of an untrained 3-class model whose card reads images with `imaging`.
fn model_folder(dir: &Path, imaging: Imaging) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let device = crate::common::device();
    let cfg = small_segmentor(1, 3);
    let model = s5::model::Segmentor::new(&cfg, &device);
    let card = s5::run::ModelCard {
        segmentor: cfg,
        datasets: vec![s5::run::DatasetCard {
            name: "three".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            palette: vec![[200, 0, 0], [0, 200, 0], [0, 0, 200]],
            background: None,
            spec: PathBuf::new(),
            imaging,
        }],
    };
    let folder = dir.join("model");
    s5::train::checkpoint::save_model_folder(&model, &card, &folder).unwrap();
    folder
}

/// `s5 predict` of GeoTIFFs (striped and tiled, 8-bit RGB and 16-bit 4-band, nodata) writes
/// index and confidence GeoTIFFs with the input's geotransform, CRS and size as GDAL reads
/// them, the nodata `output_nodata` gives, and nodata written at the input's nodata pixels.
#[test]
fn predict_writes_geotiffs_with_the_inputs_georeferencing() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (70u32, 45u32);
    // 8-bit RGB with nodata 255 in a border, like an orthophoto's.
    let rgb = dir.path().join("rgb.png");
    image::RgbImage::from_fn(w, h, |x, y| {
        if x < 3 {
            image::Rgb([255; 3])
        } else {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, 60])
        }
    })
    .save(&rgb)
    .unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    georeference(&rgb, &inputs.join("ortho-striped.tif"), "255", &[]);
    georeference(
        &rgb,
        &inputs.join("ortho-tiled.tif"),
        "255",
        &[
            "TILED=YES",
            "BLOCKXSIZE=32",
            "BLOCKYSIZE=32",
            "COMPRESS=DEFLATE",
        ],
    );
    let plain16 = dir.path().join("plain16.tif");
    write_rgba16(&plain16, w, h, &four_band_12_bit(w, h));
    georeference(
        &plain16,
        &inputs.join("scene-4band.tif"),
        "0",
        &[
            "PHOTOMETRIC=MINISBLACK",
            "TILED=YES",
            "BLOCKXSIZE=32",
            "BLOCKYSIZE=32",
        ],
    );

    // The RGB inputs with a model trained on 8-bit RGB, the 4-band one with a model whose
    // dataset chose bands and a range.
    let rgb_model = model_folder(&dir.path().join("rgb"), Imaging::default());
    let band_model = model_folder(
        &dir.path().join("bands"),
        Imaging {
            bands: Some([3, 2, 1]),
            range: Some(ValueRange::Fixed {
                low: 0.0,
                high: 4095.0,
            }),
            nodata: None,
        },
    );
    let out_dir = dir.path().join("pred");
    for (model, inputs) in [
        (
            &rgb_model,
            vec![
                inputs.join("ortho-striped.tif"),
                inputs.join("ortho-tiled.tif"),
            ],
        ),
        (&band_model, vec![inputs.join("scene-4band.tif")]),
    ] {
        let out = s5()
            .args([
                "predict",
                "--mode",
                "slide",
                "--window-px",
                "32",
                "--stride-px",
                "24",
            ])
            .arg("--model")
            .arg(model)
            .arg("--out")
            .arg(&out_dir)
            .args(&inputs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (stem, nodata) in [
        ("ortho-striped", 255.0),
        ("ortho-tiled", 255.0),
        ("scene-4band", 0.0),
    ] {
        let input = gdalinfo(&inputs.join(format!("{stem}.tif")));
        let (index_nodata, confidence_nodata) = s5::eval::predict::output_nodata(nodata, 3);
        for (kind, want_nodata, want_type) in [
            ("index", f64::from(index_nodata), "Byte"),
            ("confidence", f64::from(confidence_nodata), "Float32"),
        ] {
            let path = out_dir.join(kind).join(format!("{stem}.tif"));
            let info = gdalinfo(&path);
            assert_eq!(info["size"], input["size"], "{stem} {kind}");
            assert_eq!(info["geoTransform"], input["geoTransform"], "{stem} {kind}");
            assert_eq!(
                info["coordinateSystem"]["wkt"], input["coordinateSystem"]["wkt"],
                "{stem} {kind}"
            );
            let band = &info["bands"][0];
            assert_eq!(band["type"], want_type, "{stem} {kind}");
            assert_eq!(
                band["noDataValue"].as_f64(),
                Some(want_nodata),
                "{stem} {kind}"
            );
            assert_eq!(
                band["block"],
                serde_json::json!([256, 256]),
                "{stem} {kind}: tiled"
            );
            if kind == "index" {
                assert_eq!(band["colorInterpretation"], "Palette", "{stem}");
            }
        }
        // The pixels: nodata where the input has none, classes elsewhere.
        let index = out_dir.join("index").join(format!("{stem}.tif"));
        // Read back by GDAL itself (raw bytes of band 1) and by `s5 eval`'s reader.
        let raw = dir.path().join(format!("{stem}.bin"));
        run_ok(
            gdal("gdal_translate")
                .args(["-q", "-of", "ENVI", "-b", "1"])
                .arg(&index)
                .arg(&raw),
        );
        let values = std::fs::read(&raw).unwrap();
        assert_eq!(values.len(), (w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                let v = values[(y * w + x) as usize];
                let missing = if stem == "scene-4band" {
                    (x, y) == (0, 0)
                } else {
                    x < 3
                };
                if missing {
                    assert_eq!(v, index_nodata, "{stem} ({x}, {y}) is nodata");
                } else {
                    assert!(v < 3, "{stem} ({x}, {y}) has class {v}");
                }
            }
        }
        assert!(out_dir.join("color").join(format!("{stem}.png")).is_file());
        // `s5 eval --predictions` reads the index GeoTIFF back.
        let read = s5::data::io::read_prediction(&index, 256).unwrap();
        assert_eq!(read.as_raw(), &values);
        // The confidence: float32 probabilities of at least 1/3 where there is data.
        let raw = dir.path().join(format!("{stem}-conf.bin"));
        let confidence = out_dir.join("confidence").join(format!("{stem}.tif"));
        run_ok(
            gdal("gdal_translate")
                .args(["-q", "-of", "ENVI"])
                .arg(&confidence)
                .arg(&raw),
        );
        let bytes = std::fs::read(&raw).unwrap();
        let conf: &[f32] = bytemuck::cast_slice(&bytes);
        for (i, (&c, &v)) in conf.iter().zip(&values).enumerate() {
            if v == index_nodata && v >= 3 {
                assert_eq!(c, confidence_nodata, "{stem} pixel {i}");
            } else {
                assert!(
                    (1.0 / 3.0 - 1e-6..=1.0).contains(&c),
                    "{stem} pixel {i}: {c}"
                );
            }
        }
    }
}
