"""The catalog builder's depth (sptrace/validation/catalog.py, ``_depth``): shrunk to 2 layers, it
must still hold the first layer of every layer range the config names, or that range's parameters
are never run (issue 11: Inkling2's loop layers start at layer 6, and 2 layers left its message
queries unreached)."""
from sptrace.validation import catalog


def test_depth_holds_the_first_layer_of_a_layer_range():
    config = {"hidden_size": 256, "num_hidden_layers": 24, "vocab_size": 100,
              "loop_layer_index_start": 6, "loop_layer_index_end": 18}
    assert catalog.shrink(config, 64, "hf:toy")["num_hidden_layers"] == 7
    config["loop_layer_index_start"] = 30  # past the default depth: the default depth, no more
    assert catalog.shrink(config, 64, "hf:toy")["num_hidden_layers"] == 24
    del config["loop_layer_index_start"]
    assert catalog.shrink(config, 64, "hf:toy")["num_hidden_layers"] == catalog.LAYERS
