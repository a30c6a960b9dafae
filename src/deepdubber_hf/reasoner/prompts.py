"""The two instructions of the reasoner (Figure 4 of the paper): the CoT instruction and the direct question."""

QA_QUESTION = (
    "Is this clip a dialogue, a monologue or narration? How many characters speak, and what are the gender, age "
    "and emotion of the speaker?"
)
COT_INSTRUCTION = (
    "Watch the frames of this silent movie clip and reason step by step: count the characters, tell who is talking, "
    "decide whether the clip is a dialogue, a monologue or narration, and describe the speaker's gender, age and "
    "emotion. Answer in <SUMMARY>, <CAPTION>, <REASONING> and <CONCLUSION> sections."
)

__all__ = ["COT_INSTRUCTION", "QA_QUESTION"]
