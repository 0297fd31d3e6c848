"""The search report's "Last reflections" table (issue 20: the reflection was one squeezed column
beside a genotype that cannot wrap, so each row was a screen tall). Each reflection now sits in
its own row under its attempt, spanning every column; checked here on the page's HTML structure
(the layout itself was checked in Chromium at 1300 px)."""

import html.parser
import types

from rznas_jax.report import html as report_html
from rznas_jax.report import search_report

CHILD = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|nor_conv_3x3~1|avg_pool_3x3~2|"


class _Rows(html.parser.HTMLParser):
  """The table rows of a page: [(tr class, [(td colspan, text)])], header rows included."""

  def __init__(self):
    super().__init__()
    self.rows, self._cell = [], None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "tr":
      self.rows.append((attrs.get("class"), []))
    elif tag in ("td", "th"):
      self._cell = [int(attrs.get("colspan", 1)), ""]

  def handle_endtag(self, tag):
    if tag in ("td", "th"):
      self.rows[-1][1].append(tuple(self._cell))
      self._cell = None

  def handle_data(self, data):
    if self._cell is not None:
      self._cell[1] += data


def _trial(iteration, reflection, score=2.0):
  return {"iteration": iteration, "kind": "ok", "child": CHILD, "score": score, "parent_score": 1.5,
          "reflection": reflection}


def test_each_reflection_spans_the_table_under_its_row():
  long = "The change none->nor_conv_3x3 raised synflow. <b>Repeat</b> it. " * 12
  trials = [_trial(3, "too old"), _trial(4, None), _trial(5, long), _trial(6, "Avoid skip_connect.", 1.0)]
  page = report_html.Page("t")
  search_report._reflections_section(page, types.SimpleNamespace(trials=trials), 2)
  parser = _Rows()
  parser.feed(page.html())
  header, *body = parser.rows
  assert [text for _, text in header[1]] == ["iteration", "outcome", "child", "score change"]
  assert [cls for cls, _ in body] == ["has-detail", "detail"] * 2
  assert [text for _, text in body[0][1]] == ["5", "ok", CHILD, "0.5"]
  assert body[1][1] == [(4, long)]  # one cell across all four columns, the text unescaped back
  assert [text for _, text in body[2][1]] == ["6", "ok", CHILD, "-0.5"]
  assert body[3][1] == [(4, "Avoid skip_connect.")]
  assert "<b>Repeat" not in page.html()


def test_plain_table_has_no_detail_rows():
  page = report_html.Page("t")
  page.table(["a", "b"], [[1, 2], [3, 4]])
  parser = _Rows()
  parser.feed(page.html())
  assert parser.rows == [(None, [(1, "a"), (1, "b")]), (None, [(1, "1"), (1, "2")]),
                         (None, [(1, "3"), (1, "4")])]
