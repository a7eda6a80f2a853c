"""Knowledge bases: answers from a team's own documents, with citations.

The pieces, in the order a document travels:

- :mod:`.parsers` turn a file (Markdown, text, HTML, PDF, DOCX, XLSX, CSV, images through
  :mod:`.ocr`) into :class:`~.types.Block` paragraphs that know their heading path, section anchor
  and page;
- :mod:`.chunking` groups blocks into passages that respect headings, paragraphs and Chinese
  sentence ends, with overlap;
- :mod:`.ingest` hashes, parses, chunks, embeds and hands them to the store in small batches;
- :mod:`.lexical` (jieba terms + character bigrams for FTS5) and :mod:`.embed` (dense vectors)
  feed :mod:`.retrieve`, which fuses both rankings;
- :mod:`.answer` puts the passages into the prompt as data and turns them into citations.

SQL lives in :mod:`xiaoq.store.kb` only; llama.cpp embeddings live in :mod:`xiaoq.engine`.
"""
