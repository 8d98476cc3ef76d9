"""tools/train_reward_heads.py: its feature cache and the refusal pairs it can add to a helpful sample."""

import numpy as np

from args_local.conversations import PreferencePair

from .conftest import load_tool

CONV = [{"role": "user", "content": "How do I keep basil alive?"}]


def test_feature_cache_serves_any_list_of_the_pairs_it_holds(tmp_path, monkeypatch):
    tool = load_tool("train_reward_heads")
    monkeypatch.setattr(tool, "CACHE", tmp_path)
    pairs = [PreferencePair(i, CONV, f"answer {i}", f"worse {i}") for i in range(5)]
    extracted = []

    def features(pair):  # one row per reply, its value the pair's index: enough to check the order
        extracted.append(pair.index)
        return np.full(3, pair.index, np.float32), np.full(3, -pair.index, np.float32)

    first_c, _ = tool.extract("test", pairs[:3], features, save_every=2)
    # reordered, and two pairs the cache lacks: only those two are extracted, the order is the list's
    chosen, rejected = tool.extract("test", [pairs[4], pairs[1], pairs[3], pairs[0]], features)
    assert extracted == [0, 1, 2, 4, 3]
    assert chosen.shape == (4, 1, 3) and chosen[:, 0, 0].tolist() == [4, 1, 3, 0]
    assert rejected[:, 0, 0].tolist() == [-4, -1, -3, -0]
    assert first_c[:, 0, 0].tolist() == [0, 1, 2]


def test_refusal_pairs_are_those_where_one_reply_refuses_labels_kept():
    tool = load_tool("train_reward_heads")
    answer, refusal = "Water it when the soil is dry.", "I'm sorry, but as an AI I can't help with plants."
    data = [PreferencePair(0, CONV, "Give it sun.", refusal),  # in the sample already
            PreferencePair(1, CONV, answer, refusal),  # GPT-4 preferred the answer
            PreferencePair(2, CONV, refusal, answer),  # ... or the refusal: kept as labelled
            PreferencePair(3, CONV, refusal, "I cannot do that."),  # both refuse: nothing to learn
            PreferencePair(4, CONV, answer, "Basil.")]
    already = [PreferencePair(0, CONV, "Give it sun.", refusal)]  # read apart from `data`, as a sample is
    out = tool.refusal_pairs(data, exclude=already)  # a pair already in the sample is not added twice
    assert [p.index for p in out] == [1, 2]
    assert out[1].chosen == refusal


def test_off_topic_pairs_set_a_reply_against_one_to_another_instruction_of_the_same_split():
    tool = load_tool("train_reward_heads")
    questions = [f"Question {i}?" for i in range(12)]
    # instruction i: two pairs; its preferred replies name it, so a reply's instruction can be read back
    data = [PreferencePair(2 * i + j, [{"role": "user", "content": q}], f"answer to {i}", f"worse {i}",
                           "dev" if i >= 9 else "train")
            for i, q in enumerate(questions) for j in range(2)]
    out = tool.off_topic_pairs(data, n_train=8)
    train, dev = [p for p in out if p.split == "train"], [p for p in out if p.split == "dev"]
    assert len(train) == 8 and len(dev) == 2  # a quarter as many dev ones, to report on
    for p in out:
        asked = questions.index(p.conversation[-1]["content"])
        assert p.chosen == f"answer to {asked}"  # its own instruction's preferred reply wins
        answered = int(p.rejected.removeprefix("answer to "))
        assert answered != asked and (answered >= 9) == (p.split == "dev")
    assert len({p.conversation[-1]["content"] for p in train}) == 8  # eight different instructions
    assert tool.off_topic_pairs(data, n_train=4)[-1].split == "train"  # one dev instruction: no dev pair


def test_openings_fit_the_guide_on_each_reply_s_first_tokens_and_report_them(guide_dir, tmp_path, monkeypatch):
    from args_local.reward import load_reward_model

    from .conftest import ROOT

    tool = load_tool("train_reward_heads")
    monkeypatch.setattr(tool, "CACHE", tmp_path / "cache")
    pairs = tool.read_preference_pairs(ROOT.parent / "shared/data/alpaca-eval/helpful-pairs.jsonl.gz")
    pairs = [p for p in pairs if p.split == "train"][:10] + [p for p in pairs if p.split == "dev"][:4]
    rm = load_reward_model(guide_dir, threads=1, use_gpu=False)
    chosen, _ = tool.guide_features(rm, pairs[0], openings=(2, 10_000))
    hidden = rm.replies_hidden(pairs[0].conversation, [pairs[0].chosen, pairs[0].rejected])[0]
    d = hidden.shape[1]
    assert chosen.shape == (1 + len(tool.PREFIX_FRACTIONS) + 2, 2 * d)
    assert np.allclose(chosen[-2], np.concatenate([hidden[1], hidden[:2].mean(0)]))  # the first 2 tokens
    assert np.allclose(chosen[-1, :d], hidden[-2])  # capped at the reply; its end of turn is not an opening

    report = tool.run("guide", rm, pairs, tmp_path / "out", {}, "helpful", openings=(2, 4))
    assert set(report["dev_accuracy_on_openings"]) == {"2 tokens", "4 tokens"}
    assert all(0 <= a <= 1 for a in report["dev_accuracy_on_openings"].values())
    assert (tmp_path / "out" / "head-helpful.npz").is_file()
