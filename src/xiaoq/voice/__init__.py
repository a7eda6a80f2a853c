"""Voice: speech to text (ASR) and text to speech (TTS), offline, behind one small interface each.

The room knows audio, models and engines; it knows no HTTP and writes no SQL. ``api/routes_voice``
and the terminal commands reach it through :class:`~xiaoq.voice.service.VoiceService`, which owns
the engines and the low-priority threads they run on, so speech work never competes on equal terms
with the llama.cpp decode loop that streams everybody's tokens.
"""
