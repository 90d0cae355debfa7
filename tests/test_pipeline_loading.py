"""Pipeline folders hold safetensors: a component with pickle weights only is refused with the conversion to run."""

import shutil
import subprocess
import sys

import pytest
import torch
from transformers import T5EncoderModel

from kandinsky_video import demo
from kandinsky_video.pipelines.loading import load_pipeline


def test_a_pickled_text_encoder_is_refused_with_the_conversion_that_fixes_it(tmp_path):
    folder = tmp_path / "pipeline"
    shutil.copytree(demo.demo_weights(), folder)
    encoder_folder = folder / "text_encoder"
    encoder = T5EncoderModel.from_pretrained(encoder_folder)
    (encoder_folder / "model.safetensors").unlink()
    # transformers 5 ignores save_pretrained(safe_serialization=False) and writes safetensors anyway, and would load
    # this .bin by unpickling it: write the pickle the way older transformers did.
    torch.save(encoder.state_dict(), encoder_folder / "pytorch_model.bin")

    with pytest.raises(ValueError) as error:
        load_pipeline(folder, torch.float32, "cpu")
    message = str(error.value)
    assert f"{encoder_folder} holds pickle weights (pytorch_model.bin) and no safetensors" in message
    assert "pickles can run code" in message

    command = message.split("python -c ")[1].split(", then delete")[0]  # the fix the message gives, run as given
    subprocess.run([sys.executable, "-c", command.strip('"')], check=True, capture_output=True)
    (encoder_folder / "pytorch_model.bin").unlink()
    pipeline = load_pipeline(folder, torch.float32, "cpu")
    torch.testing.assert_close(pipeline.text_encoder.state_dict(), encoder.float().state_dict())
