"""River's adaptive random forest, growing the same trees in every process.

A Hoeffding tree's nominal splitter keeps the values it has seen in a `set` and tries a
binary split on each in the set's order, keeping the first of equal merits. The order of
a set of strings depends on the process's hash seed (PYTHONHASHSEED), and ties are
common: with two values seen, "== a" and "== b" split alike. One tree still predicts the
same either way (its branches are swapped), but a forest draws the features of each new
leaf from its random generator, leaf after leaf: swapped branches draw each other's
features. So two processes learning the same stream, or a learner restored from its
published state and one that never stopped, grew different forests. Here the values are
tried in sorted order; everything else is River's.
"""

from typing import Any

from river import forest
from river.forest.adaptive_random_forest import BaseTreeClassifier
from river.tree.nodes.arf_htc_nodes import RandomLeafMajorityClass
from river.tree.splitter.nominal_splitter_classif import NominalSplitterClassif


class _SortedNominalSplitter(NominalSplitterClassif):  # type: ignore[misc]
    def best_evaluated_split_suggestion(
        self, criterion: Any, pre_split_dist: Any, att_idx: Any, binary_only: bool
    ) -> Any:
        state = self.__dict__
        seen = state["_att_values"]
        # River's loop, over the values in sorted order rather than the set's.
        state["_att_values"] = sorted(seen)
        try:
            return super().best_evaluated_split_suggestion(
                criterion, pre_split_dist, att_idx, binary_only
            )
        finally:
            state["_att_values"] = seen


class _Leaf(RandomLeafMajorityClass):  # type: ignore[misc]
    @staticmethod
    def new_nominal_splitter() -> NominalSplitterClassif:
        return _SortedNominalSplitter()


class _Tree(BaseTreeClassifier):  # type: ignore[misc]
    """A member of the forest whose leaves predict the majority class (a leaf's share of
    purchases), with the splitter above."""

    def _new_leaf(self, initial_stats: Any = None, parent: Any = None) -> _Leaf:
        depth = 0 if parent is None else parent.depth + 1
        stats = {} if initial_stats is None else initial_stats
        return _Leaf(stats, depth, self.splitter, self.max_features, self.rng)


class ARFClassifier(forest.ARFClassifier):  # type: ignore[misc]
    """`river.forest.ARFClassifier`, deterministic given its seed; its leaves predict the
    majority class whatever `leaf_prediction` says (learner.models passes "mc")."""

    def _new_base_model(self) -> _Tree:
        tree = super()._new_base_model()
        # River's member, built with River's arguments; only its leaves are ours. (A tree
        # makes its first leaf when it first learns, so none of River's exists yet.)
        tree.__class__ = _Tree
        return tree  # type: ignore[no-any-return]
