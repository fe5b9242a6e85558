"""The board page's files (HTML, CSS, JavaScript), served by routes/board.py."""
