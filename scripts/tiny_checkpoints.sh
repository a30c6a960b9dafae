#!/usr/bin/env bash
# The embedded default, from nothing: generate the procedural corpus, then train every component with the project's
# scripts in the paper's order and pack them into checkpoints/deepdubber-tiny. Run it as `make tiny-checkpoints`.
#
#   0. corpus      deepdubber generate-data: training corpus (seeds 101/102) and held-out corpus (seeds 9001/9002)
#   1. stage 2.1   speech generation pre-training: single-voice utterances cut from the corpus -> train_tts.py
#   2. stage 1.1   reasoner SFT: the vision tower's pre-training, then train_sft.py on the CoT annotations
#   3. stage 1.2   MPO: on-policy preference pairs with format and outcome rewards -> train_mpo.py
#   4. stage 2.2   ControlNet, duration predictor, video and conclusion encoders -> train_controlnet.py
#   5. pack        scripts/pack_tiny_default.py: the pipeline, the reasoner and a sample clip, size-checked
#
# Every stage is skipped when its output is complete and resumes from its newest checkpoint when it is not, so the
# recipe can be stopped and started again at any point. WORK holds the corpus and the runs (several GB), OUT the
# result. Budget on a 2-core CPU, measured stage by stage (benchmarks/RESULTS.md): under 3 hours in all.
set -euo pipefail

WORK=${WORK:-runs/tiny-default}
OUT=${OUT:-checkpoints/deepdubber-tiny}
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
ACCELERATE="$VENV/bin/accelerate"
DEEPDUBBER="$VENV/bin/deepdubber"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# One process using both cores (accelerate's default for a CPU launch is one thread per process).
SINGLE=("$ACCELERATE" launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no
        --num_cpu_threads_per_process 2)
# Two gloo processes of one thread each (the reasoner's SFT: faster than one process with two threads).
DOUBLE=(env ACCELERATE_USE_CPU=1 OMP_NUM_THREADS=1 "$ACCELERATE" launch --multi_gpu --num_processes 2
        --mixed_precision no --dynamo_backend no)

mkdir -p "$WORK"
stage() { echo "== $(date '+%H:%M:%S') $*"; }

# -- 0. corpus ---------------------------------------------------------------------------------------------------
stage "corpus"
"$DEEPDUBBER" generate-data "$WORK/corpus" --level 1 --num-clips 2500 --seed 101 --workers 2 --test-fraction 0.02
"$DEEPDUBBER" generate-data "$WORK/corpus" --level 2 --num-clips 700 --seed 102 --workers 2 --test-fraction 0.02
"$DEEPDUBBER" generate-data "$WORK/heldout" --level 1 --num-clips 400 --seed 9001 --workers 2 --test-fraction 0.5
"$DEEPDUBBER" generate-data "$WORK/heldout" --level 2 --num-clips 200 --seed 9002 --workers 2 --test-fraction 0.5

# -- 1. stage 2.1: speech generation pre-training ----------------------------------------------------------------
stage "stage 2.1: speech generator"
[ -d "$WORK/utterances" ] || "$PY" dataset_scripts/build_tts_dataset.py "$WORK/corpus" "$WORK/utterances"
[ -f "$WORK/tts/transformer/config.json" ] || "${SINGLE[@]}" examples/train_tts.py \
    --dataset "$WORK/utterances" --output_dir "$WORK/tts" --model_config mini --tokenizer_mode phoneme \
    --text_upsampling average --text_alignment viterbi --max_duration_s 4.5 --max_frames_per_batch 3200 \
    --train_batch_size 32 --learning_rate 5e-4 --lr_warmup_steps 300 --max_train_steps 3000 --ema_decay 0.999 \
    --ema_update_after_step 100 --checkpointing_steps 500 --checkpoints_total_limit 2 --report_to none \
    --resume_from_checkpoint latest

# -- 2. stage 1.1: the reasoner's SFT ----------------------------------------------------------------------------
stage "stage 1.1: reasoner SFT"
[ -f "$WORK/vision_tower/model.safetensors" ] || "$PY" examples/pretrain_vision_tower.py \
    --dataset "$WORK/corpus" --dataset_config_name level1 level2 --output_dir "$WORK/vision_tower" \
    --max_train_steps 1500 --batch_size 6 --num_frames 10 --frame_sampling reasoner --head_weight talking=2 \
    --image_size 192
[ -f "$WORK/sft/model.safetensors" ] || "${DOUBLE[@]}" examples/train_sft.py \
    --dataset "$WORK/corpus" --dataset_config_name level1 level2 --output_dir "$WORK/sft" --model_config tiny \
    --vision_tower_name_or_path "$WORK/vision_tower" --freeze_vision_tower --mode "${REASONER_MODE:-cot}" \
    --train_batch_size 6 --max_train_steps 1000 --learning_rate 1e-3 --lr_warmup_steps 80 \
    --checkpointing_steps 250 --checkpoints_total_limit 2 --dataloader_num_workers 1 --report_to none \
    --resume_from_checkpoint latest

# -- 3. stage 1.2: MPO ---------------------------------------------------------------------------------------------
stage "stage 1.2: MPO"
[ -f "$WORK/pairs/dataset_info.json" ] || [ -f "$WORK/pairs/dataset_dict.json" ] || "$PY" \
    examples/build_preference_pairs.py --model "$WORK/sft" --dataset "$WORK/corpus" \
    --dataset_config_name level1 level2 --num_clips 300 --num_samples 4 --outcome_fields scene_type --on_policy \
    --mode "${REASONER_MODE:-cot}" --output_dir "$WORK/pairs"
[ -f "$WORK/mpo/model.safetensors" ] || "$PY" examples/train_mpo.py --model_name_or_path "$WORK/sft" \
    --dataset "$WORK/pairs" --output_dir "$WORK/mpo" --per_device_train_batch_size 4 --num_train_epochs 1 \
    --learning_rate 1e-5 --beta 0.1 --lr_scheduler_type constant --use_cpu --bf16 false --freeze_vision_tower \
    --report_to none

# -- 4. stage 2.2: ControlNet and duration predictor ---------------------------------------------------------------
stage "stage 2.2: ControlNet and duration predictor"
[ -f "$WORK/dubber/model_index.json" ] || "${SINGLE[@]}" examples/train_controlnet.py \
    --dataset "$WORK/corpus" --dataset_config_name level1 level2 --pretrained_model_name_or_path "$WORK/tts" \
    --vocoder_name_or_path griffin_lim --output_dir "$WORK/dubber" --pad_video_s 2.0 --frame_noise 1.0 \
    --flow_every 10 --train_batch_size 8 --max_train_steps 500 --learning_rate 3e-4 --lr_warmup_steps 50 \
    --checkpointing_steps 250 --checkpoints_total_limit 2 --report_to none --resume_from_checkpoint latest

# -- 5. pack -------------------------------------------------------------------------------------------------------
stage "pack"
"$PY" scripts/pack_tiny_default.py --pipeline "$WORK/dubber" --reasoner "$WORK/mpo" \
    --reasoner_mode "${REASONER_MODE:-cot}" --sample_corpus "$WORK/heldout" --output_dir "$OUT"
stage "done: $OUT"
